//! The one HTTP client path of the metrics and lineage senders: build an endpoint URL under a
//! base the user configured, and POST a body to it with a timeout.
//!
//! Errors are sentences a user can act on (what could not be reached, or what it answered); the
//! URLs in them never carry credentials.

use std::time::Duration;

use url::Url;

/// How long a send may take before it is given up.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `base` (named `setting` in errors) with `segments` appended to its path; only http(s).
pub(crate) fn endpoint(base: &str, segments: &[&str], setting: &str) -> Result<Url, String> {
    let mut url = Url::parse(base).map_err(|e| format!("invalid {setting} {base:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{setting} {base:?} must start with http:// or https://"));
    }
    url.path_segments_mut()
        .map_err(|_| format!("invalid {setting} {base:?}"))?
        .pop_if_empty()
        .extend(segments.iter().filter(|s| !s.is_empty()));
    Ok(url)
}

/// POSTs `body` to `url` (`peer` names it in errors, e.g. "the Pushgateway").
pub(crate) async fn post(url: Url, peer: &str, content_type: &str, body: Vec<u8>, bearer: Option<&str>) -> Result<(), String> {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("cannot reach {peer} at {shown}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{peer} at {shown} answered {status}: {}", text.trim()));
    }
    Ok(())
}
