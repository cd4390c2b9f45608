//! Admission warnings: plugins record messages while a request is handled
//! (PodSecurity's "would violate PodSecurity ..." for workload templates),
//! and the request's response carries them as `Warning: 299 - "..."`
//! headers, which kubectl prints as `Warning: ...`.

use std::cell::RefCell;
use std::future::Future;

use axum::response::Response;
use http::HeaderValue;

use super::super::error::ApiError;

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Records a warning for the current request (dropped outside [`with_warnings`]).
pub fn warn(message: String) {
    let _ = WARNINGS.try_with(|w| {
        let mut w = w.borrow_mut();
        if !w.contains(&message) {
            w.push(message);
        }
    });
}

/// The `Warning` header value of one message (RFC 7234 warn-code 299, agent `-`).
fn header(message: &str) -> Option<HeaderValue> {
    let mut text = String::with_capacity(message.len() + 2);
    for c in message.chars() {
        match c {
            '"' | '\\' => {
                text.push('\\');
                text.push(c);
            }
            c if c.is_control() => text.push(' '),
            c => text.push(c),
        }
    }
    HeaderValue::from_bytes(format!("299 - \"{text}\"").as_bytes()).ok()
}

/// Runs a request handler collecting warnings, and adds them to its response.
pub async fn with_warnings<F>(handler: F) -> Result<Response, ApiError>
where
    F: Future<Output = Result<Response, ApiError>>,
{
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let mut resp = handler.await?;
            let warnings = WARNINGS.with(|w| w.take());
            for value in warnings.iter().filter_map(|m| header(m)) {
                resp.headers_mut().append(http::header::WARNING, value);
            }
            Ok(resp)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_quotes_the_message() {
        let v = header(r#"would violate PodSecurity "baseline:latest": x"#).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            r#"299 - "would violate PodSecurity \"baseline:latest\": x""#
        );
    }

    #[tokio::test]
    async fn warnings_reach_the_response_once() {
        let resp = with_warnings(async {
            warn("one".into());
            warn("one".into());
            warn("two".into());
            Ok(Response::new(axum::body::Body::empty()))
        })
        .await
        .unwrap();
        let got: Vec<_> = resp.headers().get_all("warning").iter().collect();
        assert_eq!(got, vec!["299 - \"one\"", "299 - \"two\""]);
        warn("outside a request".into());
    }
}
