//! Weights in the safetensors format (readable by `safetensors.numpy.load_file`, PyTorch,
//! candle, burn): an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the raw little-endian data.
//!
//! Tensor names are `<layer>/<weight>` (`conv2d/kernel`, `dense_1/bias`); conv kernels are
//! `(filters, channels, kh, kw)`, dense kernels `(inputs, units)`.

use std::collections::BTreeMap;

use serde_json::json;

/// One tensor to store.
pub struct TensorData<'a> {
    /// Name in the file.
    pub name: &'a str,
    /// Shape.
    pub dims: &'a [usize],
    /// Values, row-major.
    pub values: &'a [f32],
}

/// Serialises `tensors` (and string `metadata`) into one safetensors file.
pub fn to_bytes(tensors: &[TensorData], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!(metadata));
    let mut offset = 0;
    for t in tensors {
        let end = offset + 4 * t.values.len();
        header.insert(t.name.into(), json!({ "dtype": "F32", "shape": t.dims, "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut head = serde_json::to_vec(&header).expect("JSON of strings and numbers");
    // The data must start 8-byte aligned; the format pads the header with spaces.
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for t in tensors {
        t.values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }
    out
}

/// A tensor read back: name, shape, values.
pub type Named = (String, Vec<usize>, Vec<f32>);

/// The JSON header and the data that follows it.
fn split(bytes: &[u8]) -> Result<(serde_json::Map<String, serde_json::Value>, &[u8]), String> {
    let len = u64::from_le_bytes(bytes.get(..8).ok_or("file too short")?.try_into().expect("8 bytes"));
    let len = usize::try_from(len).map_err(|_| "header length beyond end of file")?;
    let head = bytes.get(8..8usize.saturating_add(len)).ok_or("header length beyond end of file")?;
    let header = serde_json::from_slice(head).map_err(|e| format!("bad header: {e}"))?;
    Ok((header, &bytes[8 + len..]))
}

/// The string metadata (`__metadata__`) of a safetensors file.
pub fn metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let (header, _) = split(bytes)?;
    match header.get("__metadata__") {
        None => Ok(BTreeMap::new()),
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| format!("bad metadata: {e}")),
    }
}

/// Reads a file written by [`to_bytes`] back into `(name, dims, values)`, in file order.
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<Named>, String> {
    let (header, data) = split(bytes)?;
    let mut out = Vec::new();
    for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let dims: Vec<usize> = serde_json::from_value(info["shape"].clone()).map_err(|e| format!("{name}: {e}"))?;
        let [start, end]: [usize; 2] =
            serde_json::from_value(info["data_offsets"].clone()).map_err(|e| format!("{name}: {e}"))?;
        let raw = data.get(start..end).ok_or_else(|| format!("{name}: data beyond end of file"))?;
        let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        out.push((name.clone(), dims, values, start));
    }
    out.sort_by_key(|t| t.3);
    Ok(out.into_iter().map(|(n, d, v, _)| (n, d, v)).collect())
}
