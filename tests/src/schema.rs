//! A JSON Schema checker for the keywords warpctl's schemas use (type,
//! enum, const, properties, required, additionalProperties, items,
//! minimum, maximum, oneOf): enough to hold every `--json` line to the
//! schema file that documents it. Any other keyword in a schema is
//! refused, so a schema cannot say more than is checked.

use crate::json::Value;

/// Checks `value` against `schema`; Err says where and why it does not fit.
pub fn check(schema: &Value, value: &Value) -> Result<(), String> {
    at(schema, value, "$")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if !n.contains(['.', 'e', 'E']) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.parse().ok(),
        _ => None,
    }
}

fn at(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Value::Object(keys) = schema else { return Err(format!("{path}: the schema is not an object")) };
    for (key, rule) in keys {
        match key.as_str() {
            "$schema" | "title" | "description" => {}
            "type" => {
                let names: Vec<&str> = match rule {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(format!("{path}: a type that is neither a name nor a list")),
                };
                let t = type_name(value);
                if !names.iter().any(|n| *n == t || (*n == "number" && t == "integer")) {
                    return Err(format!("{path}: {t}, not {names:?}: {value:?}"));
                }
            }
            "enum" => {
                let options = rule.as_array().ok_or(format!("{path}: enum is not a list"))?;
                if !options.contains(value) {
                    return Err(format!("{path}: {value:?} is none of {options:?}"));
                }
            }
            "const" => {
                if rule != value {
                    return Err(format!("{path}: {value:?}, not {rule:?}"));
                }
            }
            "minimum" | "maximum" => {
                let (Some(limit), Some(n)) = (number(rule), number(value)) else { continue };
                if (key == "minimum" && n < limit) || (key == "maximum" && n > limit) {
                    return Err(format!("{path}: {n} is past the {key} {limit}"));
                }
            }
            "required" => {
                if let Value::Object(fields) = value {
                    for name in rule.as_array().unwrap_or_default().iter().filter_map(Value::as_str) {
                        if !fields.contains_key(name) {
                            return Err(format!("{path}: no {name:?}"));
                        }
                    }
                }
            }
            "properties" => {
                if let (Value::Object(fields), Value::Object(props)) = (value, rule) {
                    for (name, field) in fields {
                        if let Some(sub) = props.get(name) {
                            at(sub, field, &format!("{path}.{name}"))?;
                        }
                    }
                }
            }
            "additionalProperties" => {
                if rule != &Value::Bool(false) {
                    return Err(format!("{path}: only additionalProperties: false is checked"));
                }
                let known = keys.get("properties");
                if let Value::Object(fields) = value {
                    for name in fields.keys() {
                        if known.and_then(|p| p.get(name)).is_none() {
                            return Err(format!("{path}: {name:?} is not in the schema"));
                        }
                    }
                }
            }
            "items" => {
                if let Value::Array(items) = value {
                    for (i, item) in items.iter().enumerate() {
                        at(rule, item, &format!("{path}[{i}]"))?;
                    }
                }
            }
            "oneOf" => {
                let options = rule.as_array().ok_or(format!("{path}: oneOf is not a list"))?;
                let fits: Vec<usize> = (0..options.len()).filter(|&i| at(&options[i], value, path).is_ok()).collect();
                if fits.len() != 1 {
                    let why: Vec<String> = options.iter().filter_map(|o| at(o, value, path).err()).collect();
                    return Err(format!("{path}: fits {} of oneOf's options, not one ({why:?})", fits.len()));
                }
            }
            other => return Err(format!("{path}: the keyword {other:?} is not checked here")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn the_keywords_hold() {
        let schema = parse(
            r#"{"type":"object","required":["a"],"additionalProperties":false,
               "properties":{"a":{"type":["integer","null"],"minimum":0},"b":{"enum":["x","y"]},
                             "c":{"type":"array","items":{"type":"string"}}},
               "oneOf":[{"properties":{"b":{"const":"x"}}},{"properties":{"b":{"const":"y"}},"required":["c"]}]}"#,
        )
        .unwrap();
        let ok = |s: &str| check(&schema, &parse(s).unwrap());
        assert!(ok(r#"{"a":1,"b":"x"}"#).is_ok());
        assert!(ok(r#"{"a":null,"b":"y","c":["q"]}"#).is_ok());
        assert!(ok(r#"{"b":"x"}"#).unwrap_err().contains("no \"a\""));
        assert!(ok(r#"{"a":-1,"b":"x"}"#).unwrap_err().contains("minimum"));
        assert!(ok(r#"{"a":1.5,"b":"x"}"#).is_err(), "1.5 is no integer");
        assert!(ok(r#"{"a":1,"b":"z"}"#).is_err());
        assert!(ok(r#"{"a":1,"b":"y"}"#).unwrap_err().contains("oneOf"));
        assert!(ok(r#"{"a":1,"b":"x","c":[3]}"#).is_err());
        assert!(ok(r#"{"a":1,"b":"x","d":0}"#).unwrap_err().contains("not in the schema"));
        let odd = parse(r#"{"pattern":"x"}"#).unwrap();
        assert!(check(&odd, &Value::Null).is_err(), "unknown keywords are refused");
    }
}
