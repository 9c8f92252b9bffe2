//! Webhook event handler: POSTs each event as JSON to `url` (through the host, so the URL's
//! host must be in `allow_hosts`). The body is [`legate_plugin::event_json`]; `template`
//! replaces it with a text where `{{name}}`, `{{payload}}`, `{{watch_type}}`, `{{index}}`
//! and `{{json}}` are substituted (e.g. a Slack `{"text": "..."}` body).
//!
//! Args: url (required), method (POST|PUT), header_<name>, template, expect_status (default
//! any 2xx), timeout_ms.

use legate_plugin::http::{self, Method};
use legate_plugin::{event_json, export_handler, Config, Event, Handler};

struct Webhook;

fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn render(template: &str, event: &Event) -> String {
    let json = event_json(event).to_string();
    let (name, payload, watch_type, index) = match event {
        Event::User(u) => {
            (u.name.clone(), String::from_utf8_lossy(&u.payload).into_owned(), String::new(), String::new())
        }
        Event::Watch(w) => (String::new(), String::new(), w.watch_type.clone(), w.index.to_string()),
    };
    template
        .replace("{{name}}", &json_escape(&name))
        .replace("{{payload}}", &json_escape(&payload))
        .replace("{{watch_type}}", &json_escape(&watch_type))
        .replace("{{index}}", &index)
        .replace("{{json}}", &json)
}

impl Handler for Webhook {
    fn validate(config: &Config) -> Result<(), String> {
        for (k, _) in &config.0 {
            if !["url", "method", "template", "expect_status", "timeout_ms"].contains(&k.as_str())
                && !k.starts_with("header_")
            {
                return Err(format!("unknown arg {k:?}"));
            }
        }
        let url = config.require("url")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("arg \"url\": {url:?} is not an http(s) URL"));
        }
        match config.get("method").unwrap_or("POST").to_ascii_uppercase().as_str() {
            "POST" | "PUT" => {}
            m => return Err(format!("arg \"method\": {m:?} (POST or PUT)")),
        }
        config.parse::<u16>("expect_status")?;
        config.parse::<u32>("timeout_ms")?;
        Ok(())
    }

    fn handle(config: &Config, event: &Event) -> Result<String, String> {
        let url = config.require("url")?;
        let method = if config.get("method").is_some_and(|m| m.eq_ignore_ascii_case("PUT")) {
            Method::Put
        } else {
            Method::Post
        };
        let mut req = http::request(method, url, config.parse_or("timeout_ms", 0)?);
        req.headers.push(("content-type".into(), "application/json".into()));
        for (k, v) in &config.0 {
            if let Some(name) = k.strip_prefix("header_") {
                req.headers.push((name.to_string(), v.clone()));
            }
        }
        let body = match config.get("template") {
            Some(t) => render(t, event),
            None => event_json(event).to_string(),
        };
        req.body = Some(body.into_bytes());
        let resp = http::send(&req).map_err(|e| format!("{url}: {}", http::describe(&e)))?;
        let ok = match config.parse::<u16>("expect_status")? {
            Some(s) => resp.status == s,
            None => (200..300).contains(&resp.status),
        };
        if !ok {
            return Err(format!("{url}: HTTP {}", resp.status));
        }
        Ok(format!("delivered to {url}: HTTP {}", resp.status))
    }
}

export_handler!(Webhook);
