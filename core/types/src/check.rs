//! A check's status and the outcome of one probe, shared by the agent's check runners and the
//! WASM plugin host.

use std::fmt;
use std::str::FromStr;

/// A check's health, as Consul names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "passing" => Ok(CheckStatus::Passing),
            "warning" => Ok(CheckStatus::Warning),
            "critical" => Ok(CheckStatus::Critical),
            other => Err(format!("invalid check status: {other:?}")),
        }
    }
}

/// The result of one probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: CheckStatus,
    pub output: String,
}

impl Outcome {
    pub fn passing(output: impl Into<String>) -> Self {
        Outcome { status: CheckStatus::Passing, output: output.into() }
    }
    pub fn warning(output: impl Into<String>) -> Self {
        Outcome { status: CheckStatus::Warning, output: output.into() }
    }
    pub fn critical(output: impl Into<String>) -> Self {
        Outcome { status: CheckStatus::Critical, output: output.into() }
    }
}

/// Cuts `s` to at most `max` bytes, at a char boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
