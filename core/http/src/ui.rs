//! The web UI under `ui_config.content_path` (default `/ui/`): the assets embedded in the binary
//! (`legate-ui`), or the files of `ui_config.dir`; every other address under the path answers
//! the UI's page, which routes in the browser. `index.html` gets the UI's settings (where it
//! lives, whether ACLs are on, the datacenter) where it says `<!--legate-config-->`.

use std::path::{Component, Path};

use bytes::Bytes;
use http::{Method, StatusCode};
use legate_config::Config;
use sha2::{Digest, Sha256};

use super::response::Body;
use super::{ApiError, ApiResponse, Ctx, Request};

const PLACEHOLDER: &str = "<!--legate-config-->";

/// `GET /`: Consul's redirect to the UI, or its text when the UI is off.
pub fn root(config: &Config) -> ApiResponse {
    if config.ui_enabled() {
        ApiResponse::empty(StatusCode::MOVED_PERMANENTLY).header("Location", config.ui_content_path())
    } else {
        ApiResponse::text(
            StatusCode::OK,
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
        )
    }
}

/// The UI's answer when `path` is under the content path and the UI is on; None otherwise.
pub fn serve(ctx: &Ctx, req: &Request) -> Option<Result<ApiResponse, ApiError>> {
    let config = ctx.agent.config();
    if !config.ui_enabled() {
        return None;
    }
    let base = config.ui_content_path();
    if req.path == base.trim_end_matches('/') {
        return Some(Ok(ApiResponse::empty(StatusCode::MOVED_PERMANENTLY).header("Location", base)));
    }
    let rel = req.path.strip_prefix(base.as_str())?;
    if let Err(e) = req.allow(&[Method::GET, Method::HEAD]) {
        return Some(Err(e));
    }
    let settings = settings(ctx, &config, &base);
    Some(Ok(match &config.ui_config.dir {
        Some(dir) => from_dir(req, dir, rel, &settings),
        None => embedded(req, rel, &settings),
    }))
}

/// What the page needs to know, as the JSON the UI's `config.ts` reads.
fn settings(ctx: &Ctx, config: &Config, base: &str) -> String {
    let json = serde_json::json!({
        "base": base,
        "aclEnabled": config.acl.enabled,
        "datacenter": config.datacenter,
        "nodeName": ctx.agent.node_name(),
        "version": legate_types::version::CONSUL_VERSION,
        // Consul's `{{Service.Name}}`, `{{Service.Namespace}}`, `{{Datacenter}}` links per service.
        "dashboardUrlTemplates": config.ui_config.dashboard_url_templates,
    });
    // Inside <script>: no `<` may end it early.
    let json = json.to_string().replace('<', "\\u003c");
    format!(r#"<base href="{}"><script id="legate-config" type="application/json">{json}</script>"#, html_attr(base))
}

fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn accepts_gzip(req: &Request) -> bool {
    req.headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.trim().split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused =
                parts.any(|p| matches!(p.trim().replace(' ', "").as_str(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn not_modified(req: &Request, etag: &str) -> bool {
    req.headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// The answer for one file: 304 when the client holds it, else the body with its validators.
fn file(req: &Request, content_type: &'static str, etag: String, cache: &str, body: Bytes, gzip: bool) -> ApiResponse {
    let resp = if not_modified(req, &etag) {
        ApiResponse::empty(StatusCode::NOT_MODIFIED)
    } else {
        let mut r =
            ApiResponse { status: StatusCode::OK, headers: Vec::new(), body: Body::Raw { content_type, data: body } };
        if gzip {
            r = r.header("Content-Encoding", "gzip");
        }
        r
    };
    resp.header("ETag", etag).header("Cache-Control", cache.to_string()).header("X-Content-Type-Options", "nosniff")
}

/// The page with the settings filled in; its ETag covers both.
fn index_page(req: &Request, page: &[u8], settings: &str) -> ApiResponse {
    let page = String::from_utf8_lossy(page).replacen(PLACEHOLDER, settings, 1);
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(page.as_bytes())[..12]));
    file(req, "text/html; charset=utf-8", etag, "no-cache", Bytes::from(page), false)
}

fn embedded(req: &Request, rel: &str, settings: &str) -> ApiResponse {
    match legate_ui::get(rel).filter(|a| a.path != "index.html") {
        Some(asset) => {
            let cache = if asset.immutable() { "public, max-age=31536000, immutable" } else { "no-cache" };
            let (body, gzip) = if accepts_gzip(req) {
                (Bytes::from_static(asset.gzip), true)
            } else {
                (Bytes::from(asset.decompressed()), false)
            };
            file(req, asset.content_type, asset.etag.to_string(), cache, body, gzip)
        }
        // Missing files that look like files stay 404s; pages route in the browser.
        None if looks_like_file(rel) => ApiResponse::text(StatusCode::NOT_FOUND, "UI file not found"),
        None => index_page(req, &legate_ui::index().decompressed(), settings),
    }
}

/// Vite puts every file but the page under `assets/`: a missing one there is a 404, not the page
/// (node and service names often hold dots, so an extension says nothing).
fn looks_like_file(rel: &str) -> bool {
    rel.starts_with("assets/")
}

/// `ui_config.dir`: a UI built elsewhere, read from disk on each request (it may be replaced
/// while the agent runs).
fn from_dir(req: &Request, dir: &Path, rel: &str, settings: &str) -> ApiResponse {
    let safe = Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)));
    let path = dir.join(rel);
    if safe && !rel.is_empty() && path.is_file() {
        if rel == "index.html" {
            return from_dir(req, dir, "", settings);
        }
        return match std::fs::read(&path) {
            Ok(data) => {
                let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&data)[..12]));
                file(req, legate_ui::content_type(rel), etag, "no-cache", Bytes::from(data), false)
            }
            Err(e) => ApiResponse::text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading {}: {e}", path.display())),
        };
    }
    if looks_like_file(rel) {
        return ApiResponse::text(StatusCode::NOT_FOUND, "UI file not found");
    }
    match std::fs::read(dir.join("index.html")) {
        Ok(page) => index_page(req, &page, settings),
        Err(e) => ApiResponse::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ui_config.dir: cannot read {}: {e}", dir.join("index.html").display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_pages_are_told_apart() {
        assert!(looks_like_file("assets/index-abc.js"));
        assert!(!looks_like_file("dc1/services/web"));
        assert!(!looks_like_file(""));
        // Node names hold dots: their pages are pages.
        assert!(!looks_like_file("dc1/nodes/ip-10-0-0-1.ec2.internal"));
    }
}
