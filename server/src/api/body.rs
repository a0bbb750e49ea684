//! JSON request bodies, read as axum's `Json` reads them (415 without a
//! JSON `Content-Type`, 413 past the route's body limit, the field's path
//! in every error), except that a number with a zero fraction (`694.0`) is
//! taken where an integer is expected: JSON Schema, which `/openapi.json`
//! is written in, counts it as an integer.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ferry_shared::api::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::Error;

pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Turns integral floats into integers; says whether it changed any.
fn integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Only where the float is an integer that f64 holds exactly
            // (|x| < 2^53); a text like `1.0000000000000001` reads as 1,
            // as it does in JavaScript.
            const EXACT: f64 = (1u64 << 53) as f64;
            let int = if f.fract() != 0.0 || f.abs() >= EXACT {
                None
            } else if f >= 0.0 {
                Some(serde_json::Number::from(f as u64))
            } else {
                Some(serde_json::Number::from(f as i64))
            };
            int.map(|i| *n = i).is_some()
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, i| integers(i) | changed),
        Value::Object(map) => map.values_mut().fold(false, |changed, i| integers(i) | changed),
        _ => false,
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let invalid = |e: &dyn std::fmt::Display| Error::bad_request(format!("invalid JSON body: {e}"));
    let first = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes));
    match first {
        Ok(v) => Ok(v),
        Err(e) if e.inner().classify() == serde_json::error::Category::Data => {
            // Only a body that did not fit its type pays for a second look.
            let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(&e))?;
            if !integers(&mut value) {
                return Err(invalid(&e));
            }
            serde_path_to_error::deserialize(value).map_err(|e| invalid(&e))
        }
        Err(e) => Err(invalid(&e)),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(Error::client(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON, with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let r = r.into_response();
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::client(ErrorCode::PayloadTooLarge, "the body is larger than this endpoint takes")
            } else {
                Error::bad_request("the body could not be read")
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct T {
        n: u32,
        m: Option<i64>,
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(parse::<T>(br#"{"n": 694.0, "m": -3.0}"#).unwrap(), T { n: 694, m: Some(-3) });
        assert_eq!(parse::<T>(br#"{"n": 7}"#).unwrap(), T { n: 7, m: None });
        assert_eq!(parse::<T>(br#"{"n": 1, "m": -9223372036854775808}"#).unwrap().m, Some(i64::MIN));
        // Parsed exactly (serde_json's `float_roundtrip`): not one unit off.
        assert_eq!(parse::<T>(br#"{"n": 1, "m": 2212649635275469.0}"#).unwrap().m, Some(2_212_649_635_275_469));
        let bad: [&[u8]; 6] = [
            br#"{"n": 1.5}"#,
            br#"{"n": -1}"#,
            br#"{"n": 1e30}"#,
            br#"{"n": "x"}"#,
            b"{",
            br#"{"n": 1, "m": -9223372036854775809}"#,
        ];
        for bad in bad {
            assert!(parse::<T>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let e = parse::<T>(br#"{"n": 1.5}"#).unwrap_err().to_string();
        assert!(e.starts_with("invalid JSON body: n:"), "{e}");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=UTF-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
