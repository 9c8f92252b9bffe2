//! Legate's web UI as the agent serves it: the files `ui/` builds to (see `build.rs`), embedded
//! gzip-compressed with their Content-Type and a strong ETag.

mod mime;

pub use mime::content_type;

/// One file of the built UI.
#[derive(Debug)]
pub struct Asset {
    /// Path inside the UI: `index.html`, `assets/index-<hash>.js`.
    pub path: &'static str,
    pub gzip: &'static [u8],
    /// Size before compression.
    pub len: usize,
    pub content_type: &'static str,
    /// A quoted strong ETag from the content's hash.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

impl Asset {
    /// Vite names these after their content: they may be cached for good.
    pub fn immutable(&self) -> bool {
        self.path.starts_with("assets/")
    }

    /// The file as built, for clients that do not accept gzip (and `index.html`, which the
    /// agent fills in).
    pub fn decompressed(&self) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::with_capacity(self.len);
        flate2::read::GzDecoder::new(self.gzip).read_to_end(&mut out).expect("embedded gzip is valid");
        out
    }
}

/// The file at `path` (no leading `/`), if the UI has one.
pub fn get(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The page every UI address without a file of its own answers with.
pub fn index() -> &'static Asset {
    get("index.html").expect("the build script checks that index.html exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_ui_is_embedded_and_decompresses() {
        let page = String::from_utf8(index().decompressed()).unwrap();
        assert!(page.contains("<!--legate-config-->"), "the agent fills the UI's settings in there");
        assert_eq!(page.len(), index().len);
        // The page's scripts and styles are embedded too, named by content.
        let script = ASSETS.iter().find(|a| a.path.ends_with(".js")).expect("a script");
        assert!(script.immutable());
        assert!(page.contains(script.path), "index.html loads {}", script.path);
        assert_eq!(script.content_type, "text/javascript; charset=utf-8");
        assert!(script.gzip.len() < script.len);
    }
}
