//! The config's JSON Schema (for editors: completion and checking as you type) and the
//! Markdown reference generated from it. Both come from the config structs and their doc
//! comments, so they cannot drift from the code; a test checks `docs/config.md` is current.

use serde_json::{json, Map, Value};

use super::Config;

/// The JSON Schema of a config file, with `extends` (handled before deserialisation).
pub fn schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Config)).expect("schemas are JSON");
    schema["title"] = json!("runner experiment");
    schema["properties"]["extends"] = json!({
        "type": "string",
        "description": "A config file this one builds on (path relative to this file); its values apply unless this file sets them."
    });
    schema
}

/// The Markdown reference: one table per section, every key with its type, default and meaning.
pub fn markdown() -> String {
    let schema = schema();
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let resolve = |v: &Value| -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => defs.get(r.trim_start_matches("#/$defs/")).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut out = String::from(
        "# Config reference\n\nGenerated from the code by `runner schema --markdown`; do not edit by hand \
         (a test checks it is current). Every table denies unknown keys.\n\n",
    );
    out += &format!("`extends`: {}\n\n", schema["properties"]["extends"]["description"].as_str().unwrap_or(""));
    let root = schema["properties"].as_object().cloned().unwrap_or_default();
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for section in ["experiment", "data", "augment", "model", "train", "output", "sweep"] {
        let table = resolve(&unwrap_optional(&root[section]));
        out += &format!("## `[{section}]`{}\n\n", if required.contains(&section) { "" } else { " (optional)" });
        if let Some(d) = table.get("description").and_then(Value::as_str).filter(|d| *d != format!("`[{section}]`")) {
            out += &format!("{d}\n\n");
        }
        if section == "model" {
            out += "`layers`: the layer list, `[[model.layers]]` entries in order, each with a `type`:\n\n";
            out += &variants(&defs, "LayerConfig", "###", &resolve);
            continue;
        }
        out += &keys_table(&table, &resolve);
        // Sub-tables, each with its own keys.
        let subtables: &[(&str, &str)] = match section {
            "train" => &[("train.early_stopping", "EarlyStopping"), ("train.checkpoint", "CheckpointConfig")],
            "sweep" => &[("sweep.random", "RandomSearch")],
            _ => &[],
        };
        for (name, def) in subtables {
            out += &format!("### `[{name}]`\n\n");
            out += &keys_table(&resolve(&json!({ "$ref": format!("#/$defs/{def}") })), &resolve);
        }
        if section == "train" {
            out += "### `[train.lr_schedule]`\n\nOne of these, selected by its `type`:\n\n";
            out += &variants(&defs, "LrSchedule", "####", &resolve);
        }
    }
    out
}

/// A `type`-tagged table (`[[model.layers]]`, `[train.lr_schedule]`): one table per kind.
fn variants(defs: &Map<String, Value>, def: &str, heading: &str, resolve: &dyn Fn(&Value) -> Value) -> String {
    let mut out = String::new();
    let variants = defs.get(def).and_then(|l| l["oneOf"].as_array().cloned()).unwrap_or_default();
    for variant in variants {
        let kind = variant["properties"]["type"]["const"].as_str().unwrap_or("?").to_string();
        out += &format!("{heading} `type = \"{kind}\"`\n\n");
        if let Some(d) = variant.get("description").and_then(Value::as_str) {
            out += &format!("{d}\n\n");
        }
        let mut table = variant.clone();
        if let Some(props) = table["properties"].as_object_mut() {
            props.remove("type");
        }
        if table["properties"].as_object().is_some_and(|p| !p.is_empty()) {
            out += &keys_table(&table, resolve);
        }
    }
    out
}

fn keys_table(table: &Value, resolve: &dyn Fn(&Value) -> Value) -> String {
    let required: Vec<&str> = table["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (key, prop) in table["properties"].as_object().into_iter().flatten() {
        let target = resolve(&unwrap_optional(prop));
        let default = match prop.get("default") {
            _ if required.contains(&key.as_str()) => "required".to_string(),
            Some(Value::Null) | None => "none".to_string(),
            Some(v) => format!("`{}`", toml_literal(v)),
        };
        let description = prop
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .replace('\n', " ");
        out += &format!("| `{key}` | {} | {default} | {description} |\n", type_name(&target, resolve));
    }
    out + "\n"
}

/// `Option<T>` appears as `anyOf [T, null]`: the T.
fn unwrap_optional(v: &Value) -> Value {
    match v.get("anyOf").and_then(Value::as_array) {
        Some(options) if options.iter().any(|o| o["type"] == "null") => {
            options.iter().find(|o| o["type"] != "null").cloned().unwrap_or(Value::Null)
        }
        _ => v.clone(),
    }
}

fn type_name(v: &Value, resolve: &dyn Fn(&Value) -> Value) -> String {
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        return values.iter().map(|e| format!("`{}`", toml_literal(e))).collect::<Vec<_>>().join(" \\| ");
    }
    if let Some(options) = v.get("oneOf").or_else(|| v.get("anyOf")).and_then(Value::as_array) {
        return options.iter().map(|o| type_name(&resolve(o), resolve)).collect::<Vec<_>>().join(" or ");
    }
    if let Some(c) = v.get("const") {
        return format!("`{}`", toml_literal(c));
    }
    // `Option<T>` of a plain type: `"type": ["array", "null"]`.
    let kind = match v.get("type") {
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null"),
        other => other.and_then(Value::as_str),
    };
    match kind {
        Some("array") => format!("list of {}", type_name(&resolve(&v["items"]), resolve)),
        Some("number") => "float".into(),
        Some(t) => t.into(),
        None if v.get("$ref").is_some() => type_name(&resolve(v), resolve),
        None => "value".into(),
    }
}

fn toml_literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_literal).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}
