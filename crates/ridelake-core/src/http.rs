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

/// Longest part of an endpoint's error answer kept in an error (an answer is not ours to log
/// whole: it can be a large page, or echo what was sent).
const ANSWER_CHARS: usize = 200;

/// A credential to send as `Authorization: Bearer`, and whether it may go over plain http.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bearer<'a> {
    /// The token.
    pub token: &'a str,
    /// Plain `http://` to another host was explicitly allowed (`setting` names how).
    pub plain_http_allowed: bool,
    /// The setting that allows it, named in the refusal.
    pub setting: &'a str,
}

/// Whether a credential may be sent to `url`: always over https and to this machine (loopback
/// traffic never leaves it), over plain http to another host only when explicitly allowed.
fn may_carry_credential(url: &Url, plain_http_allowed: bool) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.scheme() == "https" || loopback || plain_http_allowed
}

/// POSTs `body` to `url` (`peer` names it in errors, e.g. "the Pushgateway").
pub(crate) async fn post(url: Url, peer: &str, content_type: &str, body: Vec<u8>, bearer: Option<Bearer<'_>>) -> Result<(), String> {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    if let Some(credential) = bearer
        && !may_carry_credential(&url, credential.plain_http_allowed)
    {
        return Err(format!(
            "refusing to send the API key to {peer} at {shown} over plain http, where anyone on the network can read it: use an https:// URL, or set {} if this network is trusted",
            credential.setting
        ));
    }
    let in_url = !url.username().is_empty() || url.password().is_some();
    if in_url && !may_carry_credential(&url, bearer.is_some_and(|b| b.plain_http_allowed)) {
        return Err(format!(
            "refusing to send the user and password in the URL of {peer} at {shown} over plain http, where anyone on the network can read them: use an https:// URL"
        ));
    }
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
    if let Some(credential) = bearer {
        request = request.bearer_auth(credential.token);
    }
    let response = request.send().await.map_err(|e| format!("cannot reach {peer} at {shown}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let text = text.trim();
        let cut: String = text.chars().take(ANSWER_CHARS).collect();
        let more = if cut.len() < text.len() { " …" } else { "" };
        return Err(format!("{peer} at {shown} answered {status}: {cut}{more}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_over_https_or_loopback_unless_plain_http_is_allowed() {
        let url = |u: &str| Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"));
        assert!(may_carry_credential(&url("https://marquez.example:5000/api"), false));
        assert!(may_carry_credential(&url("http://127.0.0.1:5000/api"), false));
        assert!(may_carry_credential(&url("http://localhost:5000/api"), false));
        assert!(may_carry_credential(&url("http://[::1]:5000/api"), false));
        assert!(!may_carry_credential(&url("http://marquez:5000/api"), false));
        assert!(!may_carry_credential(&url("http://10.0.0.7:5000/api"), false));
        assert!(may_carry_credential(&url("http://marquez:5000/api"), true));
    }

    #[tokio::test]
    async fn a_key_is_not_sent_over_plain_http_to_another_host() {
        let bearer = Bearer { token: "secret", plain_http_allowed: false, setting: "OPENLINEAGE_ALLOW_PLAIN_HTTP=true" };
        // A documentation address (RFC 5737): nothing may even be attempted.
        let target = Url::parse("http://192.0.2.1:5000/api/v1/lineage").unwrap_or_else(|e| panic!("{e}"));
        let error = post(target, "the lineage endpoint", "application/json", Vec::new(), Some(bearer)).await.unwrap_err();
        assert!(error.contains("refusing to send the API key") && error.contains("OPENLINEAGE_ALLOW_PLAIN_HTTP"), "{error}");
        assert!(!error.contains("secret"));
        let basic = Url::parse("http://user:pw-secret@192.0.2.1:9091/metrics").unwrap_or_else(|e| panic!("{e}"));
        let error = post(basic, "the Pushgateway", "text/plain", Vec::new(), None).await.unwrap_err();
        assert!(error.contains("refusing to send the user and password") && !error.contains("pw-secret"), "{error}");
    }
}
