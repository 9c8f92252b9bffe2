//! What a component is, read without compiling it (wasmparser, no engine): what servers store
//! with a pushed plugin. The world comes from the component's exports (`check` for a check,
//! `handle` for an event handler), the imports from its top-level import section, the version
//! from a `"version"` custom section (the name `wasm-tools metadata add --version` and the
//! Legate SDKs write), looked for at the top level first, then in nested modules.

use wasmparser::{Encoding, Parser, Payload};

use crate::World;

/// A component as the registry records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentMeta {
    pub world: World,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub version: Option<String>,
}

/// Describes a component; Err says why the bytes are not a Legate plugin component.
pub fn describe(bytes: &[u8]) -> Result<ComponentMeta, String> {
    let mut depth = 0usize;
    let mut top_is_component = false;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut top_version: Option<String> = None;
    let mut nested_version: Option<String> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a valid WASM component: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    top_is_component = encoding == Encoding::Component;
                    if !top_is_component {
                        return Err("a core WASM module, not a component (build for wasm32-wasip2)".into());
                    }
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| format!("not a valid WASM component: {e}"))?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| format!("not a valid WASM component: {e}"))?;
                    exports.push(export.name.name.to_string());
                }
            }
            Payload::CustomSection(reader) if reader.name() == "version" => {
                let text = String::from_utf8_lossy(reader.data()).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                if depth == 1 {
                    top_version = Some(text);
                } else if nested_version.is_none() {
                    nested_version = Some(text);
                }
            }
            _ => {}
        }
    }
    if !top_is_component {
        return Err("not a WASM component".into());
    }
    let world = if exports.iter().any(|e| e == "check") {
        World::Check
    } else if exports.iter().any(|e| e == "handle") {
        World::EventHandler
    } else {
        return Err(format!(
            "neither a {} nor a {} component (it exports {:?})",
            World::Check.as_str(),
            World::EventHandler.as_str(),
            exports
        ));
    };
    Ok(ComponentMeta { world, imports, exports, version: top_version.or(nested_version) })
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn junk_and_core_modules_are_refused() {
        assert!(describe(b"not wasm at all").unwrap_err().contains("not a valid WASM component"));
        // An empty core module: magic, version 1.
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(describe(&core).unwrap_err().contains("core WASM module"));
        // An empty component (magic, version 0x0d, layer 1): no world.
        let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        assert!(describe(&empty).unwrap_err().contains("neither"));
    }
}
