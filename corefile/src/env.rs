//! Environment-variable substitution in tokens: `{%NAME%}` first, then `{$NAME}`
//! (caddy `replaceEnvVars`). An unset variable becomes the empty string; an empty
//! name (`{$}`) stops the substitution and leaves the rest as it is.

/// Where variable values come from; the process environment in production, a map in tests.
pub trait EnvLookup {
    /// The value of `name`, or `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// Reads the process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Replaces `{%NAME%}` and `{$NAME}` references in `s`.
pub fn replace_env_vars(s: &str, env: &dyn EnvLookup) -> String {
    if !s.contains('{') {
        return s.to_owned();
    }
    let s = replace_refs(s.to_owned(), "{%", "%}", env);
    replace_refs(s, "{$", "}", env)
}

fn replace_refs(mut s: String, start: &str, end: &str, env: &dyn EnvLookup) -> String {
    // Bounded: every round removes one reference; a value that re-creates references
    // could loop in Go, so cap the rounds.
    let mut rounds = 0usize;
    while let Some(index) = s.find(start) {
        let Some(rel) = s[index..].find(end) else {
            break;
        };
        let end_index = index + rel;
        if end_index <= index + start.len() {
            return s;
        }
        let reference = s[index..end_index + end.len()].to_owned();
        let name = &reference[start.len()..reference.len() - end.len()];
        let value = env.get(name).unwrap_or_default();
        s = s.replace(&reference, &value);
        rounds += 1;
        if rounds > 10_000 {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    #[test]
    fn substitution() {
        let e = &env as &dyn EnvLookup;
        assert_eq!(replace_env_vars("{$A}.org", e), "alpha.org");
        assert_eq!(replace_env_vars("x{%A%}y{$A}", e), "xalphayalpha");
        assert_eq!(replace_env_vars("{$UNSET}z", e), "z");
        assert_eq!(replace_env_vars("{$}x{$A}", e), "{$}x{$A}");
        assert_eq!(replace_env_vars("{$SP}", e), "a b");
        assert_eq!(replace_env_vars("{$A", e), "{$A");
    }
}
