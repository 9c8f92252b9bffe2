use serde_json::json;

use super::*;

#[test]
fn consul_one_line_blocks_and_commas() {
    let v = from_str(r#"service { name = "web" port = 80 tags = ["a", "b",] }"#).unwrap();
    assert_eq!(v, json!({"service": {"name": "web", "port": 80, "tags": ["a", "b"]}}));
    let v =
        from_str(r#"ports { http = 8500, dns = 8600 } addresses = { http = "0.0.0.0", dns = "127.0.0.1" }"#).unwrap();
    assert_eq!(v, json!({"ports": {"http": 8500, "dns": 8600}, "addresses": {"http": "0.0.0.0", "dns": "127.0.0.1"}}));
}

#[test]
fn repeated_blocks_become_lists_and_labels_nest() {
    let v = from_str("service { name = \"a\" }\nservice { name = \"b\" }\nservice { name = \"c\" }").unwrap();
    assert_eq!(v, json!({"service": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
    let rules = r#"
key_prefix "" { policy = "read" }
key "secret/" { policy = "deny" }
key "app" { policy = "write" }
service "web" { policy = "write" intentions = "read" }
operator = "read"
"#;
    let v = from_str(rules).unwrap();
    assert_eq!(
        v,
        json!({
            "key_prefix": {"": {"policy": "read"}},
            "key": {"secret/": {"policy": "deny"}, "app": {"policy": "write"}},
            "service": {"web": {"policy": "write", "intentions": "read"}},
            "operator": "read",
        })
    );
    let v = from_str(r#"a "x" "y" { v = 1 } a "x" "z" { v = 2 }"#).unwrap();
    assert_eq!(v, json!({"a": {"x": {"y": {"v": 1}, "z": {"v": 2}}}}));
}

#[test]
fn values_strings_heredocs_comments() {
    let text = [
        "# comment",
        "// another",
        "/* block",
        "   comment */",
        r#"a = "tab\there \"q\" \u00e9""#,
        r#"b = "${node.name} keeps ${ "quoted" } text""#,
        "c = -12",
        "d = 1.5e3",
        "e = 0x1F",
        "f = true",
        r#"g = [1, [2, 3], { x = "y" }]"#,
        "h = <<END",
        "line one",
        "  line two",
        "END",
        "i = <<-END",
        "    indented",
        "      more",
        "    END",
        r#""key with space" = "ok""#,
        "dotted.name = 1",
    ]
    .join("\n");
    let v = from_str(&text).unwrap();
    assert_eq!(v["a"], "tab\there \"q\" é");
    assert_eq!(v["b"], "${node.name} keeps ${ \"quoted\" } text");
    assert_eq!(v["c"], -12);
    assert_eq!(v["d"], 1500.0);
    assert_eq!(v["e"], 31);
    assert_eq!(v["f"], true);
    assert_eq!(v["g"], json!([1, [2, 3], {"x": "y"}]));
    assert_eq!(v["h"], "line one\n  line two\n");
    assert_eq!(v["i"], "indented\n  more\n");
    // <<-: the closing marker's indentation goes; a line indented less keeps the text as is.
    let h = from_str("a = <<-END\n    x\n  y\n    END\nb = <<END\nEND\n").unwrap();
    assert_eq!(h["a"], "    x\n  y\n");
    assert_eq!(h["b"], "");
    assert_eq!(v["key with space"], "ok");
    assert_eq!(v["dotted.name"], 1);
}

#[test]
fn json_text_is_json() {
    assert_eq!(from_str(r#"{"a": [1]}"#).unwrap(), json!({"a": [1]}));
}

#[test]
fn errors_name_line_and_column() {
    let e = from_str("a = 1\nb = \n}").unwrap_err();
    assert_eq!((e.line, e.column), (3, 1), "{e}");
    let e = from_str("service {\n  name = \"web\"\n").unwrap_err();
    assert!(e.message.contains("'}'"), "{e}");
    let e = from_str("a = unquoted").unwrap_err();
    assert!(e.message.contains("unknown value"), "{e}");
    let e = from_str("a = \"open\nb = 1").unwrap_err();
    assert!(e.message.contains("not terminated"), "{e}");
    let e = from_str("a \"l\" = 1").unwrap_err();
    assert!(e.message.contains("labels"), "{e}");
    assert!(from_str("a = [1 2]").is_err());
    assert!(from_str("a = <<END\nnever closed").is_err());
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("a = {}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert!(from_str(&deep).unwrap_err().message.contains("nesting"));
    let ok = format!("a = {}1{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
    assert!(from_str(&ok).is_ok());
    let blocks = format!("{}{}", "a {".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
    assert!(from_str(&blocks).unwrap_err().message.contains("nesting"));
    // Labels nest too: 100k of them would build a value too deep to drop.
    let labels = format!("a {} {{}}", "\"x\" ".repeat(100_000));
    assert!(from_str(&labels).unwrap_err().message.contains("nesting"));
    let few = format!("a {} {{}}", "\"x\" ".repeat(MAX_DEPTH - 2));
    assert!(from_str(&few).is_ok());
}

#[test]
fn empty_text_is_an_empty_object() {
    assert_eq!(from_str("").unwrap(), json!({}));
    assert_eq!(from_str("# only a comment\n").unwrap(), json!({}));
}
