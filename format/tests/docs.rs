//! `docs/scenarios.md` documents every catalogue entry, and its TOML examples
//! parse. A failure names what is missing.

use format::catalogue::{
    ACTIONS, ACTION_COMMON_KEYS, AGENT_BUGS, AGENT_KEYS, EXPECT_OPERATORS, FAULT_COMMON_KEYS,
    FAULT_KINDS, OBSERVE_PATHS, PRESETS, SERVER_KEYS, SWITCHES, TOP_LEVEL_KEYS, UPGRADE_DEFECTS,
};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scenarios.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text under `heading` (a whole line such as "## Faults") up to the next
/// heading of the same or a higher level.
fn section<'d>(doc: &'d str, heading: &str) -> Option<&'d str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = doc
        .match_indices(heading)
        .find(|(i, _)| {
            (*i == 0 || doc[..*i].ends_with('\n')) && doc[i + heading.len()..].starts_with('\n')
        })?
        .0
        + heading.len();
    let rest = &doc[start..];
    let mut end = rest.len();
    let mut offset = 0;
    let mut in_code = false;
    for line in rest.split_inclusive('\n') {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !in_code && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            end = offset;
            break;
        }
        offset += line.len();
    }
    Some(&rest[..end])
}

/// The bodies of the ```toml blocks in `text`.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == "```toml" => current = Some(String::new()),
            Some(block) if line.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn code(name: &str) -> String {
    format!("`{name}`")
}

/// Notes in `missing` each name of `names` that `text` (a section, if it
/// exists) does not mention in backticks.
fn need<'a>(
    missing: &mut Vec<String>,
    place: &str,
    text: Option<&str>,
    names: impl IntoIterator<Item = &'a str>,
) {
    let Some(text) = text else {
        missing.push(format!("the section {place:?}"));
        return;
    };
    for name in names {
        if !text.contains(&code(name)) {
            missing.push(format!("{} in {place:?}", code(name)));
        }
    }
}

#[test]
fn every_catalogue_entry_is_documented() {
    let doc = doc();
    let mut missing: Vec<String> = Vec::new();
    need(
        &mut missing,
        "## Top-level keys",
        section(&doc, "## Top-level keys"),
        TOP_LEVEL_KEYS.iter().map(|k| k.name),
    );
    need(
        &mut missing,
        "## `[server]`",
        section(&doc, "## `[server]`"),
        SERVER_KEYS.iter().map(|k| k.name),
    );
    need(
        &mut missing,
        "## Behavior: presets and switches",
        section(&doc, "## Behavior: presets and switches"),
        PRESETS.iter().map(|p| p.0),
    );
    need(
        &mut missing,
        "## Switches",
        section(&doc, "## Switches"),
        SWITCHES.iter().map(|s| s.0),
    );
    need(
        &mut missing,
        "## `[[agent]]`",
        section(&doc, "## `[[agent]]`"),
        AGENT_KEYS.iter().map(|k| k.name),
    );
    need(
        &mut missing,
        "## Faults",
        section(&doc, "## Faults"),
        FAULT_COMMON_KEYS.iter().map(|k| k.name),
    );
    need(
        &mut missing,
        "## Actions",
        section(&doc, "## Actions"),
        ACTION_COMMON_KEYS.iter().map(|k| k.name),
    );
    need(
        &mut missing,
        "## Expectations",
        section(&doc, "## Expectations"),
        EXPECT_OPERATORS.iter().map(|o| o.0),
    );
    need(
        &mut missing,
        "## Outcome paths",
        section(&doc, "## Outcome paths"),
        OBSERVE_PATHS.iter().map(|p| p.0),
    );
    need(
        &mut missing,
        "### `agent-bug`",
        section(&doc, "### `agent-bug`"),
        AGENT_BUGS.iter().map(|b| b.0),
    );
    need(
        &mut missing,
        "### `upgrade`",
        section(&doc, "### `upgrade`"),
        UPGRADE_DEFECTS.iter().map(|d| d.0),
    );
    for (catalogue, tag) in [(FAULT_KINDS, "kind"), (ACTIONS, "do")] {
        for kind in catalogue {
            let heading = format!("### {}", code(kind.name));
            let text = section(&doc, &heading);
            need(
                &mut missing,
                &heading,
                text,
                kind.keys.iter().map(|k| k.name),
            );
            let example = format!("{tag} = \"{}\"", kind.name);
            if let Some(text) = text {
                if !toml_blocks(text).iter().any(|b| b.contains(&example)) {
                    missing.push(format!(
                        "a ```toml example with `{example}` under {heading:?}"
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/scenarios.md does not document:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_toml_example_parses() {
    let doc = doc();
    let blocks = toml_blocks(&doc);
    let full: Vec<&String> = blocks.iter().filter(|b| b.starts_with("name = ")).collect();
    assert!(
        !full.is_empty(),
        "docs/scenarios.md needs a complete example"
    );
    for block in &full {
        if let Err(e) = format::parse_scenario("docs/scenarios.md example", block) {
            panic!("a complete example in docs/scenarios.md does not parse: {e}\n{block}");
        }
    }
    // Fragments go into the first complete example: their `[server]` and
    // top-level keys replace its own, their agents join its agents, and
    // their faults, actions and expectations replace its own.
    let base: toml::Table = toml::from_str(full[0]).unwrap();
    for block in blocks.iter().filter(|b| !b.starts_with("name = ")) {
        let fragment: toml::Table = toml::from_str(block).unwrap_or_else(|e| {
            panic!("an example in docs/scenarios.md is not TOML: {e}\n{block}")
        });
        let mut merged = base.clone();
        for key in ["fault", "action", "expect"] {
            merged.remove(key);
        }
        for (key, value) in fragment {
            match (key.as_str(), merged.get_mut("agent"), value) {
                ("agent", Some(toml::Value::Array(agents)), toml::Value::Array(more)) => {
                    agents.extend(more)
                }
                (_, _, value) => {
                    merged.insert(key, value);
                }
            }
        }
        let text = toml::to_string(&merged).unwrap();
        if let Err(e) = format::parse_scenario("docs example", &text) {
            panic!("an example in docs/scenarios.md does not parse: {e}\n{block}");
        }
    }
}

#[test]
fn the_documented_error_messages_are_real() {
    // The first sample message on the page is the one for "5 parsecs".
    let doc = doc();
    let sample = "invalid duration \"5 parsecs\": expected a number followed by a unit, \
                  e.g. \"90s\", \"5m\", \"1h30m\" (units: ms, s, m, h)";
    assert!(doc.contains(sample));
    let err =
        format::parse_scenario("x.toml", "name = \"x\"\nduration = \"5 parsecs\"\n").unwrap_err();
    assert_eq!(err.to_string(), format!("x.toml:2:12: {sample}"));
}
