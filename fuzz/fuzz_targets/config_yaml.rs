//! The YAML config loader (`gatehouse_config::load_str`, no environment) on arbitrary UTF-8.
//!
//! Properties:
//! - never panics;
//! - every error is located: it has a line (1-based, within the text) and a column >= 1 when
//!   it has one; the only errors without a line are those whose path (`listeners`) is written
//!   nowhere in the text, not even an ancestor of it (a required section missing altogether:
//!   the loader documents "line:column where known"; the issue asked for a line always, see
//!   fuzz/README.md); a syntax error always has a line;
//! - errors come sorted by line, as documented;
//! - what the loader accepts compiles (`snapshot::compile`): "load either returns a Config that
//!   passed every check (so compiling it cannot fail) or every problem found". Compile errors
//!   about files that cannot be read (TLS certificates, keys) are the exception: loading reads no
//!   files, compiling does.

#![no_main]

use gatehouse_config::SourceMap;
use gatehouse_core::policy::Limiters;
use gatehouse_core::upstream::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Lines as YAML counts them: LF, CRLF and a lone CR each end a line (an error may point
    // just past the last one).
    let breaks = text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    let lines = breaks as u64 + 1;
    match gatehouse_config::load_str(text, &|_| None) {
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without an error");
            // Where each path is written (what the loader itself uses to locate errors). Built
            // only for an error without a line (rare): parsing the text again for every refused
            // input took about a third of the target's time.
            let map = std::cell::OnceCell::new();
            let map =
                || map.get_or_init(|| gatehouse_config::yaml::parse(text).ok().map(|root| SourceMap::from_tree(&root)));
            for e in &errors {
                let Some(line) = e.line else {
                    // Without a line only when nothing of the path (nor an ancestor) is written:
                    // a required section that is missing altogether. A syntax error always has one.
                    let map = map().as_ref().unwrap_or_else(|| panic!("syntax error without a line: {e:?}"));
                    assert_eq!(map.locate(&e.path), (None, None), "error without the line its path is on: {e:?}");
                    continue;
                };
                assert!(line >= 1 && line <= lines, "line {line} outside the text ({lines} lines): {e:?}");
                assert!(e.column.is_none_or(|c| c >= 1), "column 0: {e:?}");
                assert!(!e.message.is_empty(), "empty message: {e:?}");
            }
            let order: Vec<_> = errors.iter().map(|e| (e.line, e.column)).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted, "errors not sorted by location");
        }
        Ok(config) => {
            let uses_files = config.listeners.iter().any(|l| l.tls.is_some())
                || config
                    .upstreams
                    .iter()
                    .any(|u| u.tls.is_some() || u.targets.iter().any(|t| t.url.starts_with("https:")));
            match gatehouse_core::snapshot::compile(config, &Registry::new(), &Limiters::new()) {
                Ok(_) => {}
                Err(e) if uses_files => {
                    let _ = e;
                }
                Err(e) => panic!("a loaded config does not compile: {e}"),
            }
        }
    }
});
