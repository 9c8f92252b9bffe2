//! Extended ACL through HTTP: templated policies, JWT auth methods (static keys and a JWKS URL
//! served by a local HTTP server), binding rules, `POST /v1/acl/login` / `logout`, and the
//! `legate login` / `legate logout` commands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use legate_tests::run_legate_with;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::acl::{acl_config, start, Api, MGMT};

/// An ECDSA P-256 key pair that signs test JWTs (ES256).
pub(crate) struct Signer {
    key: rcgen::KeyPair,
    pub(crate) kid: String,
}

impl Signer {
    pub(crate) fn new(kid: &str) -> Signer {
        Signer { key: rcgen::KeyPair::generate().unwrap(), kid: kid.into() }
    }

    pub(crate) fn public_pem(&self) -> String {
        self.key.public_key_pem()
    }

    /// The key as a JWK set.
    pub(crate) fn jwks(&self) -> Value {
        let raw = self.key.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]})
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims the test methods accept: issuer, audience, a nested team, groups, a subject.
pub(crate) fn claims(sub: &str, team: &str, groups: &[&str]) -> Value {
    json!({"iss": "legate-test", "aud": ["other", "legate"], "sub": sub, "org": {"team": team},
        "groups": groups, "iat": now(), "exp": now() + 300})
}

/// A static-key auth method called `name` mapping `/org/team` -> team, `sub` -> user,
/// `groups` -> groups.
pub(crate) fn static_method(name: &str, signer: &Signer) -> Value {
    json!({"Name": name, "Type": "jwt", "Description": "static keys", "MaxTokenTTL": "1h",
        "Config": {"JWTValidationPubKeys": [signer.public_pem()], "BoundIssuer": "legate-test",
            "BoundAudiences": ["legate"], "ClaimMappings": {"/org/team": "team", "sub": "user"},
            "ListClaimMappings": {"groups": "groups"}}})
}

/// Serves `body` as JSON to every request on 127.0.0.1 (a JWKS endpoint).
async fn serve_json(body: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = body.to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

async fn login(api: &Api, method: &str, jwt: &str) -> (u16, String) {
    api.call(
        "POST",
        "/v1/acl/login",
        None,
        Some(&json!({"AuthMethod": method, "BearerToken": jwt, "Meta": {"host": "h1"}})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_policies_through_http() {
    let (a, api) = start(acl_config()).await;
    let all = api.ok("GET", "/v1/acl/templated-policies", None).await;
    let names: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "builtin/api-gateway",
            "builtin/dns",
            "builtin/node",
            "builtin/nomad-client",
            "builtin/nomad-server",
            "builtin/service"
        ]
    );
    assert_eq!(all["builtin/dns"]["Schema"], "");
    let svc = api.ok("GET", "/v1/acl/templated-policy/name/builtin/service", None).await;
    assert_eq!(svc["TemplateName"], "builtin/service");
    assert!(svc["Schema"].as_str().unwrap().contains("\"required\": [\"name\"]"));
    let (s, body) = api.call("GET", "/v1/acl/templated-policy/name/builtin/nope", Some(MGMT), None).await;
    assert_eq!((s, body.as_str()), (400, "Invalid templated policy Name: builtin/nope"));
    // The preview is the synthetic policy, with Consul's ID, name and hash.
    let p = api.ok("POST", "/v1/acl/templated-policy/preview/builtin/service", Some(&json!({"Name": "web"}))).await;
    assert_eq!(p["Hash"], "b04MnvCVtBXZAmGe4uDpGLABJoGo2nNhEJkqaN5E5x4=");
    assert!(p["Rules"].as_str().unwrap().contains("service \"web-sidecar-proxy\""));
    let (s, body) = api
        .call("POST", "/v1/acl/templated-policy/preview/builtin/service", Some(MGMT), Some(&json!({"Name": "Bad"})))
        .await;
    assert_eq!(s, 400);
    assert!(
        body.starts_with("validation error for templated policy: \"builtin/service\": service identity \"Bad\""),
        "{body}"
    );
    let (s, _) = api.call("PUT", "/v1/acl/templated-policy/preview/builtin/service", Some(MGMT), None).await;
    assert_eq!(s, 405);

    // A token with builtin/service for "api" may register api, not db; the token shows it.
    let t = api
        .ok(
            "PUT",
            "/v1/acl/token",
            Some(&json!({"TemplatedPolicies": [
                {"TemplateName": "builtin/service", "TemplateVariables": {"name": "api"}},
                {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}},
                {"TemplateName": "builtin/dns"}]})),
        )
        .await;
    let tp = t["TemplatedPolicies"].as_array().unwrap();
    assert_eq!(tp.len(), 2, "duplicates are dropped: {t}");
    assert_eq!(tp[0]["TemplateVariables"]["name"], "api");
    assert_eq!(tp[0]["TemplateID"], "00000000-0000-0000-0000-000000000003");
    let secret = t["SecretID"].as_str().unwrap();
    let (s, body) =
        api.call("PUT", "/v1/agent/service/register", Some(secret), Some(&json!({"Name": "api", "Port": 1}))).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) =
        api.call("PUT", "/v1/agent/service/register", Some(secret), Some(&json!({"Name": "db", "Port": 1}))).await;
    assert_eq!(s, 403);
    let read = api.ok("GET", &format!("/v1/acl/token/{}", t["AccessorID"].as_str().unwrap()), None).await;
    assert_eq!(read["TemplatedPolicies"], t["TemplatedPolicies"]);
    // A role carries them too, and a token with the role gets its permissions.
    let role = api
        .ok(
            "PUT",
            "/v1/acl/role",
            Some(&json!({"Name": "dbrole", "TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "db"}}]})),
        )
        .await;
    assert_eq!(role["TemplatedPolicies"][0]["TemplateName"], "builtin/service");
    let t2 = api.ok("PUT", "/v1/acl/token", Some(&json!({"Roles": [{"Name": "dbrole"}]}))).await;
    let (s, body) = api
        .call(
            "PUT",
            "/v1/agent/service/register",
            Some(t2["SecretID"].as_str().unwrap()),
            Some(&json!({"Name": "db", "Port": 1})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    // Consul's validation texts.
    for (body, want) in [
        (json!({"TemplatedPolicies": [{"TemplateName": "builtin/nope"}]}), "no such ACL templated policy with Name \"builtin/nope\""),
        (json!({"TemplatedPolicies": [{"TemplateName": ""}]}), "templated policy is missing the template name field on this token"),
        (
            json!({"TemplatedPolicies": [{"TemplateName": "builtin/service"}]}),
            "validation error for templated policy \"builtin/service\": 1 error occurred:\n\t* Invalid type. Expected: object, given: null\n\n",
        ),
    ] {
        let (s, text) = api.call("PUT", "/v1/acl/token", Some(MGMT), Some(&body)).await;
        assert_eq!((s, text.as_str()), (500, want));
    }
    let (s, text) = api
        .call(
            "PUT",
            "/v1/acl/role",
            Some(MGMT),
            Some(&json!({"Name": "r", "TemplatedPolicies": [{"TemplateName": "x"}]})),
        )
        .await;
    assert_eq!((s, text.as_str()), (500, "templated policy with an invalid templated name: x for this role"));
    let _ = a.agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_auth_methods_binding_rules_login_and_logout() {
    let (a, api) = start(acl_config()).await;
    let signer = Signer::new("k1");
    let stranger = Signer::new("k2");

    // Method validation as Consul answers it.
    let (s, text) = api
        .call("PUT", "/v1/acl/auth-method", Some(MGMT), Some(&json!({"Name": "m", "Type": "jwt", "Config": {}})))
        .await;
    assert_eq!(s, 500);
    assert!(text.starts_with("Invalid Auth Method: exactly one of 'JWTValidationPubKeys'"), "{text}");
    let (s, text) =
        api.call("PUT", "/v1/acl/auth-method", Some(MGMT), Some(&json!({"Name": "m", "Type": "kubernetes"}))).await;
    assert_eq!((s, text.as_str()), (500, "Invalid Auth Method: Type should be one of: [jwt]"));
    let (s, text) = api.call("PUT", "/v1/acl/auth-method", Some(MGMT), Some(&json!({"Name": "m", "Bogus": 1}))).await;
    assert_eq!((s, text.as_str()), (400, "AuthMethod decoding failed: json: unknown field \"Bogus\""));
    let (s, text) = api
        .call(
            "PUT",
            "/v1/acl/auth-method",
            Some(MGMT),
            Some(&json!({"Name": "m", "Type": "jwt", "Config": {"JWKSURL": "http://127.0.0.1:1/jwks"}})),
        )
        .await;
    assert_eq!(s, 500);
    assert!(text.starts_with("Invalid Auth Method: error checking JWKSURL: "), "{text}");

    let m = api.ok("PUT", "/v1/acl/auth-method", Some(&static_method("jwt-static", &signer))).await;
    assert_eq!(m["MaxTokenTTL"], "1h0m0s");
    assert_eq!(m["Config"]["BoundIssuer"], "legate-test");
    let list = api.ok("GET", "/v1/acl/auth-methods", None).await;
    assert_eq!(list[0]["Name"], "jwt-static");
    assert!(list[0].get("Config").is_none(), "the list has no Config: {list}");
    let (s, text) = api.call("GET", "/v1/acl/auth-method/nope", Some(MGMT), None).await;
    assert_eq!((s, text.as_str()), (404, "Requested auth method does not exist: ACL not found"));

    // Something for the rules to bind: a role granting key reads.
    api.ok(
        "PUT",
        "/v1/acl/policy",
        Some(&json!({"Name": "kv-read", "Rules": "key_prefix \"\" { policy = \"read\" }"})),
    )
    .await;
    api.ok("PUT", "/v1/acl/role", Some(&json!({"Name": "ops-role", "Policies": [{"Name": "kv-read"}]}))).await;
    let rule = |selector: &str, bind_type: &str, bind_name: &str| json!({"AuthMethod": "jwt-static", "Selector": selector, "BindType": bind_type, "BindName": bind_name});
    let r1 = api
        .ok("PUT", "/v1/acl/binding-rule", Some(&rule("value.team == \"ops\"", "service", "svc-${value.user}")))
        .await;
    api.ok("PUT", "/v1/acl/binding-rule", Some(&rule("\"admins\" in list.groups", "role", "ops-role"))).await;
    api.ok("PUT", "/v1/acl/binding-rule", Some(&rule("", "role", "no-such-role"))).await;
    let mut tp = rule("value.team == \"ops\"", "templated-policy", "builtin/node");
    tp["BindVars"] = json!({"Name": "n-${value.user}"});
    let r4 = api.ok("PUT", "/v1/acl/binding-rule", Some(&tp)).await;
    assert_eq!(r4["BindVars"]["name"], "n-${value.user}");
    // Rules are checked against the method's mappings.
    for (body, want) in [
        (rule("value.nope == \"x\"", "service", "s"), "invalid Binding Rule: Selector is invalid"),
        (rule("", "service", "${value.nope}"), "unknown variable accessed: value.nope"),
        (rule("", "bogus", "x"), "Invalid Binding Rule: unknown BindType \"bogus\""),
        (
            json!({"AuthMethod": "missing", "BindType": "service", "BindName": "x"}),
            "cannot find auth method with name \"missing\"",
        ),
    ] {
        let (s, text) = api.call("PUT", "/v1/acl/binding-rule", Some(MGMT), Some(&body)).await;
        assert_eq!(s, 500, "{text}");
        assert!(text.contains(want), "{text} lacks {want}");
    }
    let rules = api.ok("GET", "/v1/acl/binding-rules?authmethod=jwt-static", None).await;
    assert_eq!(rules.as_array().unwrap().len(), 4);
    let r1_id = r1["ID"].as_str().unwrap();
    let updated = api
        .ok("PUT", &format!("/v1/acl/binding-rule/{r1_id}"), Some(&json!({"Selector": "value.team == \"ops\"", "BindType": "service", "BindName": "svc-${value.user}", "Description": "services"})))
        .await;
    assert_eq!(
        (updated["Description"].as_str(), updated["AuthMethod"].as_str()),
        (Some("services"), Some("jwt-static"))
    );

    // A login: the token holds what the matching rules bind, a missing role is skipped.
    let (s, body) = login(&api, "jwt-static", &signer.sign(&claims("Alice", "ops", &["admins"]))).await;
    assert_eq!(s, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["Description"], "token created via login: {\"host\":\"h1\"}");
    assert_eq!(t["AuthMethod"], "jwt-static");
    assert_eq!(t["ServiceIdentities"][0]["ServiceName"], "svc-alice");
    assert_eq!(t["Roles"].as_array().unwrap().len(), 1);
    assert_eq!(t["Roles"][0]["Name"], "ops-role");
    assert_eq!(t["TemplatedPolicies"][0]["TemplateVariables"]["name"], "n-alice");
    assert_eq!(t["Local"], true);
    assert!(t["ExpirationTime"].is_string());
    let secret = t["SecretID"].as_str().unwrap().to_string();
    // ...and it works: key reads through the role, the node and service through the rules.
    let (s, _) = api.call("GET", "/v1/kv/anything", Some(&secret), None).await;
    assert_eq!(s, 404, "key:read granted, the key is missing");
    let reg = |node: &str, svc: &str| json!({"Node": node, "Address": "10.0.0.1", "Service": {"Service": svc}});
    let (s, body) = api.call("PUT", "/v1/catalog/register", Some(&secret), Some(&reg("n-alice", "svc-alice"))).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = api.call("PUT", "/v1/catalog/register", Some(&secret), Some(&reg("other", "svc-alice"))).await;
    assert_eq!(s, 403);

    // Refused logins, with Consul's status codes.
    let (s, text) = login(&api, "jwt-static", &stranger.sign(&claims("a", "ops", &[]))).await;
    assert_eq!((s, text.as_str()), (500, "no known key successfully validated the token signature"));
    let mut expired = claims("a", "ops", &[]);
    expired["exp"] = json!(now() - 600);
    expired["iat"] = json!(now() - 900);
    let (s, text) = login(&api, "jwt-static", &signer.sign(&expired)).await;
    assert_eq!(s, 500);
    assert!(text.ends_with("token is expired (exp)"), "{text}");
    let mut wrong_aud = claims("a", "ops", &[]);
    wrong_aud["aud"] = json!("elsewhere");
    let (s, text) = login(&api, "jwt-static", &signer.sign(&wrong_aud)).await;
    assert_eq!((s, text.as_str()), (500, "error validating claims: aud claim does not match any bound audience"));
    let (s, text) = login(&api, "nope", &signer.sign(&claims("a", "ops", &[]))).await;
    assert_eq!((s, text.as_str()), (403, "ACL not found: auth method \"nope\" not found"));
    let (s, text) = login(&api, "jwt-static", &signer.sign(&claims("bob", "dev", &[]))).await;
    assert_eq!((s, text.as_str()), (403, "Permission denied"), "only the missing role matched");
    let (s, text) = login(&api, "jwt-static", "not-a-jwt").await;
    assert_eq!(s, 500);
    assert!(text.contains("compact JWS format must have three parts"), "{text}");

    // Logout deletes login tokens only.
    let (s, text) = api.call("POST", "/v1/acl/logout", None, None).await;
    assert_eq!((s, text.as_str()), (401, "Supplied token does not exist"));
    let (s, text) = api.call("POST", "/v1/acl/logout", Some(MGMT), None).await;
    assert_eq!((s, text.as_str()), (403, "Permission denied: token wasn't created via login"));
    let (s, _) = api.call("POST", "/v1/acl/logout", Some(&secret), None).await;
    assert_eq!(s, 200);
    let (s, _) = api.call("GET", "/v1/acl/token/self", Some(&secret), None).await;
    assert_eq!(s, 403, "the token is gone");

    // A method with a JWKS URL (a local HTTP server serving the key set).
    let url = serve_json(signer.jwks()).await;
    api.ok(
        "PUT",
        "/v1/acl/auth-method",
        Some(&json!({"Name": "jwt-jwks", "Type": "jwt", "Config": {"JWKSURL": url, "BoundAudiences": ["legate"],
            "ClaimMappings": {"sub": "user"}}})),
    )
    .await;
    api.ok(
        "PUT",
        "/v1/acl/binding-rule",
        Some(&json!({"AuthMethod": "jwt-jwks", "BindType": "node", "BindName": "${value.user}"})),
    )
    .await;
    let (s, body) = login(&api, "jwt-jwks", &signer.sign(&claims("Carol", "x", &[]))).await;
    assert_eq!(s, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["NodeIdentities"][0]["NodeName"], "carol");
    assert_eq!(t["NodeIdentities"][0]["Datacenter"], "dc1");
    let (s, text) = login(&api, "jwt-jwks", &stranger.sign(&claims("c", "x", &[]))).await;
    assert_eq!((s, text.as_str()), (500, "error verifying token: failed to verify id token signature"));

    // legate login / logout against the static method.
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("jwt");
    std::fs::write(&jwt_file, format!("{}\n", signer.sign(&claims("Dave", "ops", &[])))).unwrap();
    let sink = dir.path().join("token");
    let addr = api.base.clone();
    let args = [
        "login",
        "-http-addr",
        &addr,
        "-method",
        "jwt-static",
        "-bearer-token-file",
        jwt_file.to_str().unwrap(),
        "-token-sink-file",
        sink.to_str().unwrap(),
        "-meta",
        "via=cli",
    ];
    let (code, out, err) = run_legate_with(&args, &[("CONSUL_HTTP_TOKEN", "not-sent")], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "login prints nothing");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sink).unwrap().permissions().mode() & 0o777, 0o600);
    let cli_secret = std::fs::read_to_string(&sink).unwrap();
    let me = api.call("GET", "/v1/acl/token/self", Some(&cli_secret), None).await;
    assert_eq!(me.0, 200);
    assert!(me.1.contains("token created via login: {\\\"via\\\":\\\"cli\\\"}"), "{}", me.1);
    let (code, _, err) = run_legate_with(&["login", "-http-addr", &addr, "-method", "jwt-static"], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("Missing required '-token-sink-file' flag"), "{err}");
    let (code, _, err) = run_legate_with(&["logout", "-http-addr", &addr, "-token", MGMT], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("Error destroying token: ") && err.contains("token wasn't created via login"), "{err}");
    // -token-file, as `consul login`'s sink file is meant to be used.
    let sink_arg = sink.to_str().unwrap();
    let (code, out, err) =
        run_legate_with(&["acl", "token", "read", "-http-addr", &addr, "-self", "-token-file", sink_arg], &[], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("token created via login"), "{out}");
    let (code, _, err) =
        run_legate_with(&["logout", "-http-addr", &addr], &[("CONSUL_HTTP_TOKEN_FILE", sink_arg)], None);
    assert_eq!(code, 0, "{err}");
    let (s, _) = api.call("GET", "/v1/acl/token/self", Some(&cli_secret), None).await;
    assert_eq!(s, 403, "logged out");

    // Deleting a method deletes its rules and the tokens its logins made.
    let (s, body) = login(&api, "jwt-static", &signer.sign(&claims("Eve", "ops", &[]))).await;
    assert_eq!(s, 200, "{body}");
    let eve: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api.ok("DELETE", "/v1/acl/auth-method/jwt-static", None).await, json!(true));
    assert_eq!(api.ok("GET", "/v1/acl/binding-rules?authmethod=jwt-static", None).await, json!([]));
    let (s, _) = api.call("GET", "/v1/acl/token/self", Some(eve["SecretID"].as_str().unwrap()), None).await;
    assert_eq!(s, 403);
    assert_eq!(api.ok("DELETE", "/v1/acl/auth-method/jwt-static", None).await, json!(true), "deleting twice is fine");
    let _ = a.agent.shutdown(Duration::from_secs(5)).await;
}
