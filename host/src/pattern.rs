//! The anchored regular expressions of profiles (`cn.allowed`, `sans.dns_regex`) and of
//! parameter definitions (`regex`), compiled once per process.
//!
//! Each is checked on every request, once per name it applies to, and a request's SANs are
//! checked again against the certificate the CA returns. Compiling `[a-z0-9.-]+` costs
//! ≈ 90 µs here: a profile with both patterns spent ≈ 550 µs of policy on five SANs, more
//! than half an issuance, and ≈ 2 µs without them (`cargo bench -p certhost --bench policy`).
//! The patterns come from configuration and are few, so the compiled form is kept by its
//! text; a change of definition brings a new text, so nothing needs invalidating.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use regex::Regex;

/// More distinct patterns than any configuration holds; past it the cache starts again, so a
/// stream of definitions with new patterns (each one checked through the API) cannot grow it.
const CAPACITY: usize = 256;

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(CAPACITY));

/// `pattern` compiled to match a whole value (`^(?:pattern)$`), as every rule means it; or
/// why it cannot be a rule. It must compile alone and wrapped: either test alone lets a bad
/// rule through. `[a-z]+)|(.*` compiles only once wrapped, and then reads as `^(?:[a-z]+)` or
/// `(.*)$`, matching anything; `(?x)[a-z]+ #` compiles alone, but its comment swallows the
/// wrapper's `)$`. Both are refused here, where every use passes — so a definition saved by
/// an older certhost, which checked only one form, matches nothing rather than anything.
pub fn anchored(pattern: &str) -> Result<Arc<Regex>, String> {
    COMPILED.anchored(pattern)
}

/// Compiled patterns by their text, at most `capacity` of them.
struct Compiled {
    map: Mutex<HashMap<String, Arc<Regex>>>,
    capacity: usize,
}

impl Compiled {
    fn new(capacity: usize) -> Self {
        Self { map: Mutex::default(), capacity }
    }

    fn anchored(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        if let Some(re) = self.lock().get(pattern) {
            return Ok(Arc::clone(re));
        }
        // Compiled outside the lock: other requests' lookups do not wait for it.
        Regex::new(pattern).map_err(|e| one_line(&e))?;
        let re = Arc::new(Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            format!("it does not compile as ^(?:{pattern})$, the form it is matched in: {}", one_line(&e))
        })?);
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(pattern.to_owned(), Arc::clone(&re));
        Ok(re)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Regex>>> {
        // A panic while the lock was held cannot leave the map in a state that matters:
        // every entry is a finished compile of its own key.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The regex crate's error as one line: a syntax error is several (the pattern again, a caret
/// under the place, then the reason), which broke the one-sentence `detail` of an API error
/// and the CLI's message (black-box review of stop 35). The reason is kept, with the place as
/// a character offset.
fn one_line(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => {
            let reason = text.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).unwrap_or("a syntax error");
            // The caret line marks the place, under the pattern's own line.
            let at = text.lines().find(|l| l.trim_start().starts_with('^')).map(|l| l.find('^').unwrap_or(0));
            let indent = text.lines().nth(1).map_or(0, |l| l.len() - l.trim_start().len());
            match at {
                Some(col) => format!("{reason} (at character {})", col.saturating_sub(indent) + 1),
                None => reason.to_owned(),
            }
        }
        regex::Error::CompiledTooBig(limit) => format!("it compiles to more than the {limit} bytes a pattern may use"),
        other => other.to_string().lines().collect::<Vec<_>>().join(" "),
    }
}

/// Why `pattern` cannot be a rule, if it cannot (see [`anchored`]).
pub fn check(pattern: &str) -> Result<(), String> {
    anchored(pattern).map(|_| ())
}

/// Whether all of `value` matches `pattern`; an invalid pattern matches nothing (definitions
/// are checked when they are saved, so this only refuses what a broken one would let through,
/// such as one an older certhost saved).
pub fn full_match(pattern: &str, value: &str) -> bool {
    anchored(pattern).is_ok_and(|re| re.is_match(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_whole_value_only() {
        assert!(full_match("[a-z]+", "abc"));
        assert!(!full_match("[a-z]+", "abc1"), "anchored at the end");
        assert!(!full_match("[a-z]+", "1abc"), "anchored at the start");
        assert!(!full_match("a|b", "ab"), "an alternation is anchored as a whole");
        assert!(full_match("a|b", "b"));
    }

    #[test]
    fn an_invalid_pattern_is_an_error_and_matches_nothing() {
        let err = check("ab[a-").unwrap_err();
        assert_eq!(err, "unclosed character class (at character 3)", "one line, naming the place");
        assert!(anchored("[a-").is_err());
        assert!(!full_match("[a-", "[a-"));
    }

    #[test]
    fn a_rule_must_compile_alone_and_anchored() {
        assert_eq!(check("[a-z0-9.-]+"), Ok(()));
        let escapes = check("[a-z]+)|(.*").expect_err("would match anything once wrapped");
        assert!(escapes.contains("unopened group"), "{escapes}");
        let swallows = check("(?x)[a-z]+ # trailing comment").expect_err("the comment eats the wrapper");
        assert!(swallows.contains("does not compile as ^(?:"), "{swallows}");
        // A rule saved before `check` knew both forms matches nothing, not everything.
        assert!(!full_match("[a-z]+)|(.*", "anything at all"));
    }

    #[test]
    fn a_pattern_is_compiled_once() {
        let cache = Compiled::new(4);
        let first = cache.anchored("cached-[0-9]+").expect("valid");
        let again = cache.anchored("cached-[0-9]+").expect("valid");
        assert!(Arc::ptr_eq(&first, &again), "the second lookup returns the first compile");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = Compiled::new(4);
        for i in 0..10 {
            let re = cache.anchored(&format!("bound-{i}")).expect("valid");
            assert!(re.is_match(&format!("bound-{i}")));
            assert!(cache.lock().len() <= 4, "{} entries", cache.lock().len());
        }
        assert!(cache.anchored("[a-").is_err());
        assert!(cache.lock().values().all(|re| re.as_str().starts_with("^(?:bound-")), "no failed compile is kept");
    }
}
