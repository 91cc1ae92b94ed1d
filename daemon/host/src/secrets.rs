//! Secrets inside plugin calls: a template renders `{{ secrets.NAME }}` to an opaque
//! placeholder, and only the host, on the way out of an `http` or `process` call, puts the
//! value in its place. Whatever comes back (a response, a process's output, an error) has the
//! values it used masked as `***`, so a plugin never holds one and cannot leak one.
//!
//! A value is masked in every form it may come back in: as it is, JSON-escaped,
//! URL-encoded, base64-encoded (standard and URL-safe, with or without padding), each line of
//! a multi-line value (a PEM key streamed line by line) on its own, and forms the host derives
//! from it (the base64 of a basic-auth pair).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret as _, SecretString};

/// What stands in for a secret value everywhere a human or a plugin could see it.
pub const MASK: &str = "***";

/// Where secret values come from (the daemon's vault).
pub trait SecretSource: Send + Sync {
    /// Every secret's (name, placeholder).
    fn placeholders(&self) -> Vec<(String, String)>;
    /// Decrypts one secret; `Ok(None)` when it does not exist (any more).
    fn reveal(&self, name: &str) -> Result<Option<SecretString>, String>;
}

/// Secrets handed over with a call (an agent's, decrypted): name, placeholder and value.
pub struct GivenSecrets(pub Vec<(String, String, SecretString)>);

impl SecretSource for GivenSecrets {
    fn placeholders(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(name, placeholder, _)| (name.clone(), placeholder.clone()))
            .collect()
    }

    fn reveal(&self, name: &str) -> Result<Option<SecretString>, String> {
        Ok(self
            .0
            .iter()
            .find(|(given, _, _)| given == name)
            .map(|(_, _, value)| value.clone()))
    }
}

/// How a value is written where its placeholder stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As it is (a header value, an argv element).
    Raw,
    /// Inside a JSON string literal.
    Json,
    /// Percent-encoded (a URL, a form body).
    Url,
}

/// The secrets of one plugin call: it substitutes placeholders and remembers each value it
/// revealed, so that every answer can be masked.
#[derive(Clone, Default)]
pub struct SecretScope {
    source: Option<Arc<dyn SecretSource>>,
    /// The secrets this call may use: the ones its step's templates name. A plugin that
    /// writes another secret's placeholder itself gets the placeholder sent, not the value.
    allowed: BTreeSet<String>,
    /// Revealed values in every encoding they may come back in, longest first.
    revealed: Arc<Mutex<Vec<String>>>,
}

impl SecretScope {
    pub fn new(source: Option<Arc<dyn SecretSource>>, allowed: BTreeSet<String>) -> Self {
        Self {
            source,
            allowed,
            revealed: Arc::default(),
        }
    }

    /// Replaces every placeholder in `text` by its secret, written as `encoding` asks.
    pub fn substitute(&self, text: &str, encoding: Encoding) -> Result<String, String> {
        let Some(source) = &self.source else {
            return Ok(text.to_owned());
        };
        if !text.contains(PLACEHOLDER_PREFIX) {
            return Ok(text.to_owned());
        }
        let mut placeholders = source.placeholders();
        // A name may be a prefix of another (`a` and `a_b`): the longer placeholder first.
        placeholders.sort_by_key(|(_, placeholder)| std::cmp::Reverse(placeholder.len()));
        let mut out = text.to_owned();
        for (name, placeholder) in placeholders {
            if !out.contains(&placeholder) || !self.allowed.contains(&name) {
                continue;
            }
            let value = source
                .reveal(&name)?
                .ok_or_else(|| format!("secret `{name}` was removed from the vault"))?;
            self.remember(value.expose_secret());
            let written = match encoding {
                Encoding::Raw => value.expose_secret().to_owned(),
                Encoding::Json => json_escaped(value.expose_secret()),
                Encoding::Url => url_encoded(value.expose_secret()),
            };
            out = out.replace(&placeholder, &written);
        }
        Ok(out)
    }

    /// Bytes version of [`SecretScope::substitute`]; bytes that are not UTF-8 hold no
    /// placeholder a template could have written and pass unchanged.
    pub fn substitute_bytes(&self, bytes: Vec<u8>, encoding: Encoding) -> Result<Vec<u8>, String> {
        match String::from_utf8(bytes) {
            Ok(text) => Ok(self.substitute(&text, encoding)?.into_bytes()),
            Err(err) => Ok(err.into_bytes()),
        }
    }

    /// Every secret this scope may put in, with its placeholder and value, for a host that
    /// hands the call to another (a remote agent); remembered, so that anything coming back
    /// has them masked. Secrets no longer in the source are left out.
    pub fn reveal_allowed(&self) -> Result<Vec<(String, String, SecretString)>, String> {
        let Some(source) = &self.source else {
            return Ok(Vec::new());
        };
        let mut revealed = Vec::new();
        for (name, placeholder) in source.placeholders() {
            if !self.allowed.contains(&name) {
                continue;
            }
            if let Some(value) = source.reveal(&name)? {
                self.remember(value.expose_secret());
                revealed.push((name, placeholder, value));
            }
        }
        Ok(revealed)
    }

    /// A secret's value for the host's own use (a connection URL kept in the vault), whether
    /// or not the step's templates name it; remembered, so that it is masked like the others.
    pub fn reveal(&self, name: &str) -> Result<Option<String>, String> {
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let value = source.reveal(name)?;
        Ok(value.map(|value| {
            self.remember(value.expose_secret());
            value.expose_secret().to_owned()
        }))
    }

    /// `text` with every value this scope revealed masked, and any placeholder too (it names
    /// a secret, which is harmless, but reads as noise).
    pub fn mask(&self, text: &str) -> String {
        let revealed = self
            .revealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = text.to_owned();
        for value in revealed.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        drop(revealed);
        self.mask_placeholders(&out)
    }

    /// Byte version of [`SecretScope::mask`]: a body that is not UTF-8 is masked where its
    /// bytes match a value.
    pub fn mask_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        match String::from_utf8(bytes) {
            Ok(text) => self.mask(&text).into_bytes(),
            Err(err) => {
                let mut bytes = err.into_bytes();
                let revealed = self
                    .revealed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for value in revealed.iter() {
                    bytes = replace_bytes(&bytes, value.as_bytes(), MASK.as_bytes());
                }
                bytes
            }
        }
    }

    /// `text` with placeholders shown as `***`: for plans, errors and outputs.
    pub fn mask_placeholders(&self, text: &str) -> String {
        let Some(source) = &self.source else {
            return text.to_owned();
        };
        if !text.contains(PLACEHOLDER_PREFIX) {
            return text.to_owned();
        }
        let mut placeholders = source.placeholders();
        placeholders.sort_by_key(|(_, placeholder)| std::cmp::Reverse(placeholder.len()));
        let mut out = text.to_owned();
        for (_, placeholder) in placeholders {
            out = out.replace(&placeholder, MASK);
        }
        out
    }

    /// Remembers a text the host derived from revealed values (the base64 of a basic-auth
    /// pair), so that it is masked like a value.
    pub fn remember_derived(&self, form: &str) {
        self.remember_forms([form.to_owned()].into());
    }

    /// The length of the longest text this scope masks: a cut made that far past a point
    /// cannot split a secret that starts before it.
    pub fn longest_masked(&self) -> usize {
        self.revealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first()
            .map_or(0, String::len)
    }

    fn remember(&self, value: &str) {
        self.remember_forms(forms_of(value));
    }

    fn remember_forms(&self, forms: BTreeSet<String>) {
        let mut revealed = self
            .revealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for form in forms.into_iter().filter(|form| !form.is_empty()) {
            if !revealed.contains(&form) {
                revealed.push(form);
            }
        }
        // Longest first, so that masking a value never leaves a tail of a longer one.
        revealed.sort_by_key(|form| std::cmp::Reverse(form.len()));
    }
}

/// What every placeholder starts with (the vault's format).
pub const PLACEHOLDER_PREFIX: &str = "__rb_secret.";

/// Lines of a multi-line value shorter than this are not masked on their own: they would
/// mask common text (a PEM key's short last line leaks at most this much of a long key).
const MIN_MASKED_LINE: usize = 8;

/// Every form of `value` that output, a response or an error may show.
fn forms_of(value: &str) -> BTreeSet<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let standard = STANDARD.encode(value);
    let mut forms: BTreeSet<String> = [
        value.to_owned(),
        json_escaped(value),
        url_encoded(value),
        // Without its padding, the base64 form also matches where padding was dropped.
        standard.trim_end_matches('=').to_owned(),
        URL_SAFE_NO_PAD.encode(value),
    ]
    .into();
    if value.contains('\n') {
        forms.extend(
            value
                .lines()
                .map(|line| line.trim_end_matches('\r'))
                .filter(|line| line.len() >= MIN_MASKED_LINE)
                .map(str::to_owned),
        );
    }
    forms
}

fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn url_encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut index = 0;
    while index < haystack.len() {
        if haystack[index..].starts_with(needle) {
            out.extend_from_slice(with);
            index += needle.len();
        } else {
            out.push(haystack[index]);
            index += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl SecretSource for Fixed {
        fn placeholders(&self) -> Vec<(String, String)> {
            vec![
                ("a".into(), "__rb_secret.0123456789ab.a__".into()),
                ("a_b".into(), "__rb_secret.0123456789ab.a_b__".into()),
            ]
        }

        fn reveal(&self, name: &str) -> Result<Option<SecretString>, String> {
            Ok(match name {
                "a" => Some(SecretString::from("p\"w&d")),
                "a_b" => Some(SecretString::from("longer")),
                _ => None,
            })
        }
    }

    fn scope() -> SecretScope {
        SecretScope::new(
            Some(Arc::new(Fixed)),
            ["a".to_owned(), "a_b".to_owned()].into(),
        )
    }

    #[test]
    fn only_the_steps_own_secrets_are_put_in() {
        let scope = SecretScope::new(Some(Arc::new(Fixed)), ["a".to_owned()].into());
        assert_eq!(
            scope
                .substitute(
                    "__rb_secret.0123456789ab.a__ __rb_secret.0123456789ab.a_b__",
                    Encoding::Raw
                )
                .expect("known"),
            "p\"w&d __rb_secret.0123456789ab.a_b__"
        );
    }

    #[test]
    fn substitutes_in_each_encoding() {
        let scope = scope();
        let text = "x=__rb_secret.0123456789ab.a__ y=__rb_secret.0123456789ab.a_b__";
        assert_eq!(
            scope.substitute(text, Encoding::Raw).expect("known"),
            "x=p\"w&d y=longer"
        );
        assert_eq!(
            scope.substitute(text, Encoding::Json).expect("known"),
            "x=p\\\"w&d y=longer"
        );
        assert_eq!(
            scope.substitute(text, Encoding::Url).expect("known"),
            "x=p%22w%26d y=longer"
        );
    }

    #[test]
    fn masks_revealed_values_in_every_form() {
        let scope = scope();
        scope
            .substitute("__rb_secret.0123456789ab.a__", Encoding::Raw)
            .expect("known");
        assert_eq!(
            scope.mask("echo p\"w&d and p%22w%26d and p\\\"w&d"),
            "echo *** and *** and ***"
        );
        // Never revealed in this scope, so not known to it; its placeholder is still masked.
        assert_eq!(
            scope.mask("longer __rb_secret.0123456789ab.a_b__"),
            "longer ***"
        );
    }

    #[test]
    fn masks_base64_forms_each_line_of_a_multi_line_value_and_derived_forms() {
        use base64::Engine as _;
        let scope = SecretScope::new(Some(Arc::new(Pem)), ["pem".to_owned()].into());
        scope
            .substitute("__rb_secret.0123456789ab.pem__", Encoding::Raw)
            .expect("known");
        for line in PEM.lines() {
            let masked = scope.mask(line);
            assert!(
                !masked.contains("MIIEvQIBADANBg") && !masked.contains("kqhkiG9w0BAQEFAASC"),
                "{masked}"
            );
        }
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(PEM);
            let masked = scope.mask(&format!("b64={encoded}"));
            assert!(masked.starts_with("b64=***"), "{masked}");
            assert!(masked.len() <= "b64=***==".len(), "{masked}");
        }
        scope.remember_derived("dXNlcjpwYXNz");
        assert_eq!(scope.mask("Basic dXNlcjpwYXNz"), "Basic ***");
        assert!(scope.longest_masked() >= PEM.len());
    }

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7MIIEvQIBADANBg\nab=\n-----END PRIVATE KEY-----\n";

    struct Pem;

    impl SecretSource for Pem {
        fn placeholders(&self) -> Vec<(String, String)> {
            vec![("pem".into(), "__rb_secret.0123456789ab.pem__".into())]
        }

        fn reveal(&self, _name: &str) -> Result<Option<SecretString>, String> {
            Ok(Some(SecretString::from(PEM)))
        }
    }

    #[test]
    fn text_without_placeholders_is_untouched() {
        assert_eq!(
            scope().substitute("plain", Encoding::Raw).expect("plain"),
            "plain"
        );
        assert_eq!(
            SecretScope::default()
                .substitute("__rb_secret.x.y__", Encoding::Raw)
                .expect("no vault"),
            "__rb_secret.x.y__"
        );
    }
}
