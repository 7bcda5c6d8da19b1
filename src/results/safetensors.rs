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

/// Reads a safetensors file (one written by [`to_bytes`], or by another tool) back into
/// `(name, dims, values)`, in file order. Only float32 tensors are read: a file with others
/// is refused, naming every one of them and its type.
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<Named>, String> {
    let (header, data) = split(bytes)?;
    let tensors = || header.iter().filter(|(k, _)| *k != "__metadata__");
    let others: Vec<String> = tensors()
        .filter_map(|(name, info)| match info["dtype"].as_str() {
            Some("F32") => None,
            Some(dtype) => Some(format!("`{name}` is {dtype}")),
            None => Some(format!("`{name}` has no dtype")),
        })
        .collect();
    if !others.is_empty() {
        return Err(format!(
            "runner reads float32 (F32) tensors only, but {}; convert them to float32 first",
            others.join(", ")
        ));
    }
    let mut out = Vec::new();
    for (name, info) in tensors() {
        let dims: Vec<usize> = serde_json::from_value(info["shape"].clone()).map_err(|e| format!("{name}: {e}"))?;
        let [start, end]: [usize; 2] =
            serde_json::from_value(info["data_offsets"].clone()).map_err(|e| format!("{name}: {e}"))?;
        if end.checked_sub(start) != dims.iter().try_fold(4usize, |n, &d| n.checked_mul(d)) {
            return Err(format!("{name}: {} bytes of data for the shape {dims:?}", end.saturating_sub(start)));
        }
        let raw = data.get(start..end).ok_or_else(|| format!("{name}: data beyond end of file"))?;
        let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        out.push((name.clone(), dims, values, start));
    }
    out.sort_by_key(|t| t.3);
    Ok(out.into_iter().map(|(n, d, v, _)| (n, d, v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dtype: &str) -> Vec<u8> {
        let tensors = [
            TensorData { name: "dense/kernel", dims: &[2, 1], values: &[1.0, 2.0] },
            TensorData { name: "dense/bias", dims: &[1], values: &[0.5] },
        ];
        let bytes = to_bytes(&tensors, &BTreeMap::new());
        // Same length, so the header stays valid: "F32" becomes another three-letter type.
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let head = std::str::from_utf8(&bytes[8..8 + len]).unwrap().replacen("\"F32\"", &format!("\"{dtype}\""), 1);
        [&bytes[..8], head.as_bytes(), &bytes[8 + len..]].concat()
    }

    #[test]
    fn float32_tensors_read_back() {
        let read = from_bytes(&file("F32")).unwrap();
        assert_eq!(
            read,
            [("dense/kernel".into(), vec![2, 1], vec![1.0, 2.0]), ("dense/bias".into(), vec![1], vec![0.5])]
        );
    }

    #[test]
    fn other_dtypes_are_refused_by_name() {
        // The header lists tensors by name, so the first "F32" is `dense/bias`'s.
        let err = from_bytes(&file("F64")).unwrap_err();
        assert!(
            err.contains("`dense/bias` is F64") && !err.contains("dense/kernel") && err.contains("float32"),
            "{err}"
        );
    }
}
