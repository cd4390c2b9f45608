//! Turning any failure of a verb into the single line kubectl would print:
//! `Error from server (NotFound): deployments.apps "x" not found` for API
//! errors, `error: ...` for everything else.

use kube::core::Status;

/// The one line to print for `err`.
pub fn one_line(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
            return format_status(status);
        }
    }
    let top = err.to_string();
    let line = if err.chain().count() > 1 {
        format!("{err:#}")
    } else {
        top.clone()
    };
    let line = line.replace('\n', " ");
    if top.starts_with("error: ") || top.starts_with("Error from server") {
        line
    } else {
        format!("error: {line}")
    }
}

/// kubectl's rendering of an API `Status`.
pub fn format_status(status: &Status) -> String {
    let message = status.message.trim();
    let message = if message.is_empty() {
        format!("the server answered {}", status.code)
    } else {
        message.replace('\n', " ")
    };
    if status.reason.is_empty() {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({}): {message}", status.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        let mut s = Status::failure(message, reason);
        s.code = code;
        s
    }

    #[test]
    fn api_errors_read_like_kubectl() {
        let err =
            kube::Error::Api(status(404, "NotFound", "deployments.apps \"x\" not found").boxed());
        let err = anyhow::Error::from(err).context("getting deployment x");
        assert_eq!(
            one_line(&err),
            "Error from server (NotFound): deployments.apps \"x\" not found"
        );
        assert_eq!(
            format_status(&status(500, "", "")),
            "Error from server: the server answered 500"
        );
    }

    #[test]
    fn other_errors_get_one_error_prefix() {
        let err = anyhow::anyhow!("error: the server doesn't have a resource type \"foo\"");
        assert_eq!(
            one_line(&err),
            "error: the server doesn't have a resource type \"foo\""
        );
        let err: anyhow::Result<()> =
            Err(std::io::Error::other("connection refused")).context("connecting");
        assert_eq!(
            one_line(&err.unwrap_err()),
            "error: connecting: connection refused"
        );
    }
}
