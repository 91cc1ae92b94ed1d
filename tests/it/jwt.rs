//! JWT auth and the OAuth2 JWT-bearer grant against the real test server, which verifies every
//! signature with the public half of the test keys: the daemon signs with a key from its vault
//! that neither the plugin nor anything the run shows ever holds.

use runbook_e2e::http_server::{JWT_HMAC_SECRET, TestServer};
use runbook_e2e::{Daemon, step, workspace_root};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("tests/fixtures/jwt").join(name)).unwrap()
}

#[test]
fn the_daemon_signs_jwts_that_the_far_end_verifies_and_nobody_sees() {
    let server = TestServer::start();
    let runbook = r#"
[targets.api]
url = "{url}"
auth = { type = "jwt", key = "{{ secrets.rsa_key }}", alg = "RS256", ttl = "2m", key_id = "k1", claims = { iss = "runbook", sub = "deployer", aud = "test-api" } }

[[steps]]
id = "call"
uses = "http"
with = { target = "api", path = "/jwt/protected", capture = { sub = "$.sub", ttl = "$.ttl", jti = "$.jti" } }

[[steps]]
id = "again"
uses = "http"
needs = ["call"]
with = { target = "api", path = "/jwt/protected", capture = { jti = "$.jti" } }

[[steps]]
id = "shared"
uses = "http"
with = { url = "{url}/jwt/protected", auth = { type = "jwt", key = "{{ secrets.hmac_key }}", alg = "HS256", claims = { sub = "hmac-user", aud = "test-api" } }, capture = { sub = "$.sub" } }

[[steps]]
id = "exchange"
uses = "http"
with = { url = "{url}/oauth/protected", auth = { type = "oauth2", grant = "jwt_bearer", token_url = "{url}/oauth/token", assertion = { key = "{{ secrets.ec_key }}", alg = "ES256", claims = { iss = "sa@runbook", sub = "sa@runbook", aud = "runbook-tests" } } } }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("jwt.toml", &runbook)], "");
    let rsa = fixture("rsa-private.pem");
    let ec = fixture("ec-private.pem");
    daemon.set_secret("rsa_key", &rsa);
    daemon.set_secret("ec_key", &ec);
    daemon.set_secret("hmac_key", JWT_HMAC_SECRET);

    let run = daemon.run_to_end("jwt", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    let captures = &step(&run, "call")["output"]["captures"];
    assert_eq!(captures["sub"], "deployer", "{run:#}");
    assert_eq!(captures["ttl"], 120, "exp is iat plus the ttl");
    assert_ne!(
        captures["jti"],
        step(&run, "again")["output"]["captures"]["jti"],
        "a fresh token per request"
    );
    assert_eq!(
        step(&run, "shared")["output"]["captures"]["sub"],
        "hmac-user",
        "an HS256 token, verified with the shared secret"
    );
    let token = server.requests_to("/jwt/protected")[0]
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a compact JWS: {token}");

    // The grant traded an ES256 assertion for an access token, which the API accepted.
    let grant = &server.requests_to("/oauth/token")[0];
    assert_eq!(
        grant.form_param("grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert!(grant.form_param("client_secret").is_none());
    assert_eq!(step(&run, "exchange")["output"]["status"], 200);
    // And the token is cached like a client-credentials one: a second run asks for none.
    let second = daemon.run_to_end("jwt", &[]);
    assert_eq!(second["status"], "completed", "{second:#}");
    assert_eq!(server.count("/oauth/token"), 1);

    // Neither the keys nor the tokens signed with them are in what the run shows.
    let id = run["id"].as_str().unwrap();
    let shown = String::from_utf8_lossy(&daemon.cli(&["show", id, "--json"]).stdout).into_owned();
    let events = daemon.events(id).join("\n");
    let assertion = grant.form_param("assertion").unwrap();
    for text in [&shown, &events] {
        assert!(!text.contains(&token), "the signed token is masked: {text}");
        assert!(!text.contains(&assertion), "so is the assertion");
        for key in [&rsa, &ec] {
            let line = key.lines().nth(1).unwrap();
            assert!(!text.contains(line), "a key line: {text}");
        }
    }
}

#[test]
fn a_key_of_the_wrong_kind_fails_the_step_without_showing_it() {
    let server = TestServer::start();
    let runbook = r#"
[[steps]]
id = "call"
uses = "http"
with = { url = "{url}/jwt/protected", auth = { type = "jwt", key = "{{ secrets.hmac }}", alg = "RS256", claims = { aud = "test-api" } } }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("wrong.toml", &runbook)], "");
    daemon.set_secret("hmac", "an HMAC secret, not a PEM key");
    let run = daemon.run_to_end("wrong", &[]);
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = step(&run, "call")["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("cannot sign the JWT: the signing key is not an RSA private key in PEM"),
        "{error}"
    );
    assert!(!error.contains("HMAC secret"), "{error}");
    assert_eq!(server.count("/jwt/protected"), 0, "nothing was sent");
}
