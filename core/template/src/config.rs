//! consul-template's configuration: `template` blocks (also the agent config's own `template`
//! blocks), `wait`, `consul` and `exec`, from HCL or JSON files and `-template` strings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use legate_types::duration::GoDuration;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One template: where it comes from, where it goes, what runs after.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateSpec {
    /// The template file (or `contents`).
    pub source: Option<PathBuf>,
    /// The template text itself, instead of `source`.
    pub contents: Option<String>,
    /// Where the output goes (required unless rendering to stdout with `-dry`).
    pub destination: Option<PathBuf>,
    /// Run after the output changed: a shell command line, or an argv list.
    pub command: Option<CommandSpec>,
    /// How long the command may run (default 30s).
    pub command_timeout: Option<GoDuration>,
    /// The output file's mode, octal (`0644`, `"0640"`); default: the existing file's, else 0644.
    pub perms: Option<Perms>,
    /// Keep the previous output as `<destination>.bak`.
    pub backup: bool,
    pub left_delimiter: Option<String>,
    pub right_delimiter: Option<String>,
    /// Quiescence for this template (overrides the top-level `wait`).
    pub wait: Option<Wait>,
    /// A missing map key fails the render (else it renders as the zero value).
    pub error_on_missing_key: bool,
    /// Create the destination's missing parent directories (default true).
    pub create_dest_dirs: Option<bool>,
}

/// `command = "nginx -s reload"` (run by `sh -c`) or `command = ["nginx", "-s", "reload"]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandSpec {
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandSpec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            CommandSpec::Argv(v) => v.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            CommandSpec::Shell(s) => s.trim().is_empty(),
            CommandSpec::Argv(v) => v.is_empty(),
        }
    }
}

/// A file mode written the way people write it: `0644` (HCL reads the digits), `"0644"`, `"644"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perms(pub u32);

impl Serialize for Perms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for Perms {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let digits = match Json::deserialize(d)? {
            Json::Number(n) => n.to_string(),
            Json::String(s) => s,
            other => return Err(serde::de::Error::custom(format!("perms: expected an octal mode, got {other}"))),
        };
        let mode = u32::from_str_radix(digits.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| serde::de::Error::custom(format!("perms: {digits:?} is not an octal file mode")))?;
        Ok(Perms(mode))
    }
}

/// Quiescence: render `min` after the last change, and at most `max` after the first.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Wait {
    pub min: Duration,
    pub max: Duration,
}

impl Wait {
    /// `"5s"` (max = 4 x min, as consul-template) or `"5s:20s"`.
    pub fn parse(text: &str) -> Result<Wait, String> {
        let dur = |s: &str| s.trim().parse::<GoDuration>().map(|d| d.0).map_err(|e| format!("wait {text:?}: {e}"));
        let (min, max) = match text.split_once(':') {
            Some((a, b)) => (dur(a)?, dur(b)?),
            None => {
                let min = dur(text)?;
                (min, min * 4)
            }
        };
        if max < min {
            return Err(format!("wait {text:?}: max must be at least min"));
        }
        Ok(Wait { min, max })
    }
}

impl Serialize for Wait {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}:{}", GoDuration(self.min), GoDuration(self.max)))
    }
}

impl<'de> Deserialize<'de> for Wait {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Block {
            min: Option<GoDuration>,
            max: Option<GoDuration>,
        }
        match Json::deserialize(d)? {
            Json::String(s) => Wait::parse(&s).map_err(serde::de::Error::custom),
            block @ Json::Object(_) => {
                let b: Block = serde_json::from_value(block).map_err(serde::de::Error::custom)?;
                let min = b.min.map(|m| m.0).unwrap_or_default();
                let max = b.max.map(|m| m.0).unwrap_or(min * 4);
                if max < min {
                    return Err(serde::de::Error::custom("wait: max must be at least min"));
                }
                Ok(Wait { min, max })
            }
            other => Err(serde::de::Error::custom(format!("wait: expected \"min:max\" or a block, got {other}"))),
        }
    }
}

/// The `consul` block: the agent to ask.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulBlock {
    pub address: Option<String>,
    pub token: Option<String>,
}

/// The `exec` block: a child process to supervise.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExecSpec {
    pub command: Option<CommandSpec>,
    /// Sent on a change (else the child is restarted).
    pub reload_signal: Option<String>,
    /// Stops the child (default SIGTERM).
    pub kill_signal: Option<String>,
    /// Then SIGKILL after this long (default 30s).
    pub kill_timeout: Option<GoDuration>,
}

/// A consul-template config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub consul: ConsulBlock,
    pub wait: Option<Wait>,
    pub template: Vec<TemplateSpec>,
    pub exec: Option<ExecSpec>,
    pub log_level: Option<String>,
    pub kill_signal: Option<String>,
    pub reload_signal: Option<String>,
    pub once: Option<bool>,
}

impl FileConfig {
    /// Later files override scalars and add templates (consul-template's merge).
    pub fn merge(&mut self, other: FileConfig) {
        self.consul.address = other.consul.address.or(self.consul.address.take());
        self.consul.token = other.consul.token.or(self.consul.token.take());
        self.wait = other.wait.or(self.wait);
        self.template.extend(other.template);
        self.exec = other.exec.or(self.exec.take());
        self.log_level = other.log_level.or(self.log_level.take());
        self.kill_signal = other.kill_signal.or(self.kill_signal.take());
        self.reload_signal = other.reload_signal.or(self.reload_signal.take());
        self.once = other.once.or(self.once);
    }
}

/// Repeated blocks come as a list, one block as an object: always a list.
pub fn as_list(value: Json) -> Vec<Json> {
    match value {
        Json::Array(items) => items,
        Json::Null => Vec::new(),
        one => vec![one],
    }
}

/// Reads a config file (HCL or JSON by extension; HCL also reads JSON) or every `.hcl`/`.json`
/// file of a directory, in name order.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "hcl" || e == "json") {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut config = FileConfig::default();
    for file in files {
        config.merge(load_file(&file)?);
    }
    Ok(config)
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut value: Json = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        legate_hcl::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    if let Json::Object(map) = &mut value {
        if let Some(t) = map.remove("template") {
            map.insert("template".into(), Json::Array(as_list(t)));
        }
        // One block per key in HCL 1: `consul {}` twice is a list of one-entry objects.
        for key in ["consul", "exec", "wait"] {
            if let Some(Json::Array(blocks)) = map.get_mut(key) {
                let last = blocks.pop().unwrap_or(Json::Null);
                map.insert(key.into(), last);
            }
        }
    }
    serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))
}

/// `-template "in.tpl:out.conf[:command]"`: consul-template splits on `:`, a Windows drive letter
/// aside; the command is the rest (it may hold more `:`).
pub fn parse_template_flag(text: &str) -> Result<TemplateSpec, String> {
    let mut parts = text.splitn(3, ':');
    let source = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| format!("-template {text:?}: no source"))?;
    let destination = parts.next().filter(|s| !s.is_empty());
    let command = parts.next().filter(|c| !c.trim().is_empty());
    Ok(TemplateSpec {
        source: Some(source.into()),
        destination: destination.map(PathBuf::from),
        command: command.map(|c| CommandSpec::Shell(c.to_string())),
        ..TemplateSpec::default()
    })
}

/// What is wrong with a template definition, if anything.
pub fn validate(spec: &TemplateSpec, dry: bool) -> Result<(), String> {
    match (&spec.source, &spec.contents) {
        (None, None) => return Err("template needs a source or contents".into()),
        (Some(_), Some(_)) => return Err("template takes a source or contents, not both".into()),
        _ => {}
    }
    if spec.destination.is_none() && !dry {
        return Err(format!("template {}: no destination", spec.name()));
    }
    if spec.left_delimiter.as_deref() == Some("") || spec.right_delimiter.as_deref() == Some("") {
        return Err(format!("template {}: delimiters cannot be empty", spec.name()));
    }
    Ok(())
}

impl TemplateSpec {
    /// How logs and errors name it: the source file, else `(contents) -> destination`.
    pub fn name(&self) -> String {
        match (&self.source, &self.destination) {
            (Some(s), _) => s.display().to_string(),
            (None, Some(d)) => format!("(contents for {})", d.display()),
            (None, None) => "(contents)".into(),
        }
    }

    pub fn command_timeout(&self) -> Duration {
        self.command_timeout.map(|t| t.0).unwrap_or(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_flags_split_like_consul_template() {
        let t = parse_template_flag("in.tpl:/etc/nginx/conf.d/up.conf:nginx -s reload && echo: done").unwrap();
        assert_eq!(t.source.as_deref(), Some(Path::new("in.tpl")));
        assert_eq!(t.destination.as_deref(), Some(Path::new("/etc/nginx/conf.d/up.conf")));
        assert_eq!(t.command, Some(CommandSpec::Shell("nginx -s reload && echo: done".into())));
        assert!(parse_template_flag(":out").is_err());
    }

    #[test]
    fn wait_and_perms_read_every_form() {
        assert_eq!(Wait::parse("2s").unwrap(), Wait { min: Duration::from_secs(2), max: Duration::from_secs(8) });
        assert_eq!(Wait::parse("1s:5s").unwrap(), Wait { min: Duration::from_secs(1), max: Duration::from_secs(5) });
        assert!(Wait::parse("5s:1s").is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ct.hcl");
        std::fs::write(
            &file,
            "wait { min = \"1s\" max = \"3s\" }\ntemplate {\n source = \"a\"\n destination = \"b\"\n perms = 0640\n}\ntemplate {\n contents = \"x\"\n destination = \"c\"\n perms = \"0600\"\n wait = \"2s:4s\"\n}\n",
        )
        .unwrap();
        let c = load(&file).unwrap();
        assert_eq!(c.wait, Some(Wait { min: Duration::from_secs(1), max: Duration::from_secs(3) }));
        assert_eq!(c.template.len(), 2);
        assert_eq!(c.template[0].perms, Some(Perms(0o640)));
        assert_eq!(c.template[1].perms, Some(Perms(0o600)));
        assert_eq!(c.template[1].wait, Some(Wait { min: Duration::from_secs(2), max: Duration::from_secs(4) }));
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ct.hcl");
        std::fs::write(&file, "vault { address = \"x\" }\n").unwrap();
        let err = load(&file).unwrap_err();
        assert!(err.contains("ct.hcl") && err.contains("vault"), "{err}");
    }
}
