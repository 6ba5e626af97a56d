//! W3C Trace Context (`traceparent`) for plugin egress: the embedding service sets the trace of
//! the request being served ([`TRACEPARENT`], a task-local), and a plugin's outgoing request
//! carries it only to destinations that opt in (`[egress] trace-context-destinations`). To any
//! other destination (third parties such as Pwned Passwords or a CAPTCHA vendor) the gateway
//! sends no `traceparent` or `tracestate`, even one the plugin set itself.

use http::HeaderMap;

tokio::task_local! {
    /// The `traceparent` of the request this task serves, set by the embedding service around
    /// each request.
    pub static TRACEPARENT: String;
}

/// The trace of the task's current request, when it has one.
pub fn current() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok()
}

/// Applies the rule to one outgoing request's `headers` bound for `url`: any trace header is
/// removed, then `traceparent` is set when `url` starts with one of `destinations` and there
/// is a trace to send.
pub fn apply(
    headers: &mut HeaderMap,
    url: &str,
    destinations: &[String],
    traceparent: Option<&str>,
) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    let opted_in = destinations
        .iter()
        .any(|prefix| !prefix.is_empty() && url.starts_with(prefix.as_str()));
    if opted_in
        && let Some(value) = traceparent.and_then(|value| http::HeaderValue::from_str(value).ok())
    {
        headers.insert("traceparent", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_opted_in_destinations_get_the_trace() {
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let destinations = vec!["https://risk.internal/".to_owned()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("00-forged-by-plugin"),
        );
        apply(
            &mut headers,
            "https://api.pwnedpasswords.com/range/ABCDE",
            &destinations,
            Some(trace),
        );
        assert!(headers.get("traceparent").is_none());
        apply(
            &mut headers,
            "https://risk.internal/score",
            &destinations,
            Some(trace),
        );
        assert_eq!(headers.get("traceparent").unwrap(), trace);
    }
}
