//! Request bodies: read with a hard size limit (3 MiB, also for streamed
//! bodies), decoded from JSON or YAML by Content-Type, with nesting and YAML
//! alias expansion bounded; and JSON responses.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

use super::error::ApiError;

/// The largest request body accepted (as kube-apiserver's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// The deepest nesting accepted in a request object.
const MAX_DEPTH: usize = 100;

/// How much of an oversized body is read and thrown away before the 413 is
/// sent, so a client still writing it sees the answer instead of a reset
/// connection; past this (or [`DRAIN_TIME`]) the connection is just closed.
const DRAIN_LIMIT: usize = 4 * MAX_BODY;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes with 413.
/// Memory stays bounded by the limit, also for bodies without a length.
pub async fn read(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        drain(body, declared.unwrap_or(0)).await;
        return Err(ApiError::RequestEntityTooLarge { limit: MAX_BODY });
    }
    let mut body = body;
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading request body: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if buffer.len() + chunk.len() > MAX_BODY {
            drain(body, 0).await;
            return Err(ApiError::RequestEntityTooLarge { limit: MAX_BODY });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// Discards the rest of an oversized body (bounded in bytes and time).
async fn drain(mut body: Body, declared: usize) {
    if declared > DRAIN_LIMIT {
        return;
    }
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_LIMIT {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The media type of the request (`application/json`, without parameters).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".into())
}

/// Decodes a JSON or YAML document into a value (400 when malformed).
pub fn decode(media_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    let value = if media_type.contains("yaml") {
        decode_yaml(bytes)?
    } else if media_type.contains("protobuf") {
        super::protobuf::decode(bytes)?
    } else {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => v,
            // Clients sometimes send YAML without saying so.
            Err(json_err) if !bytes.first().is_some_and(|b| *b == b'{' || *b == b'[') => {
                decode_yaml(bytes)
                    .map_err(|_| ApiError::BadRequest(format!("invalid JSON body: {json_err}")))?
            }
            Err(e) => return Err(ApiError::BadRequest(format!("invalid JSON body: {e}"))),
        }
    };
    if depth(&value) > MAX_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "the request object is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(value)
}

fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    // Expanded size is bounded: serde_yaml limits alias repetitions and recursion;
    // the re-encoded size must also stay within the body limit.
    let value: Value = serde_yaml::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid YAML body: {e}")))?;
    let expanded = serde_json::to_vec(&value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if expanded > MAX_BODY * 2 {
        return Err(ApiError::BadRequest(
            "the YAML body expands beyond the size limit".into(),
        ));
    }
    Ok(value)
}

/// The nesting depth of a value (a scalar is 0).
fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// A JSON response with `code`.
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = (code, bytes).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::Internal(format!("encoding response: {e}")).into_response(),
    }
}

/// A 200 JSON response.
pub fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_bodies_decode() {
        let v = decode("application/yaml", b"kind: Pod\nmetadata:\n  name: a\n").unwrap();
        assert_eq!(v["metadata"]["name"], "a");
        let v = decode("application/json", br#"{"kind":"Pod"}"#).unwrap();
        assert_eq!(v["kind"], "Pod");
        let v = decode("application/json", b"kind: Pod\n").unwrap();
        assert_eq!(v["kind"], "Pod");
        assert!(matches!(
            decode("application/json", b"{nope"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_rejected() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 0..9 {
            let prev = (b'a' + i) as char;
            let next = (b'a' + i + 1) as char;
            bomb.push_str(&format!("{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        assert!(matches!(
            decode("application/yaml", bomb.as_bytes()),
            Err(ApiError::BadRequest(_))
        ));
        let deep = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        assert!(matches!(
            decode("application/json", deep.as_bytes()),
            Err(ApiError::BadRequest(_))
        ));
        let deep_yaml = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        assert!(matches!(
            decode("application/yaml", deep_yaml.as_bytes()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn oversized_bodies_get_413() {
        let big = vec![b' '; MAX_BODY + 1];
        let err = read(&HeaderMap::new(), Body::from(big)).await.unwrap_err();
        assert!(matches!(err, ApiError::RequestEntityTooLarge { .. }));
        let small = read(&HeaderMap::new(), Body::from("{}")).await.unwrap();
        assert_eq!(&small[..], b"{}");
    }
}
