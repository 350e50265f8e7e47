//! One source for defaults: `config/default.toml`, the code's fallbacks and
//! `docs/configuration.md` must not drift apart.
//!
//! `default.toml` sets every key the code knows, except the few the reference documents as
//! left unset. A key the code can do without (a serde default: the pool, the cache, the
//! timeouts) has its default written twice, in `default.toml` and in a `Default` impl, so
//! leaving it out of the file must change nothing; a key the code cannot do without has only
//! the file as its source. The operator's reference lists every key with its default, and
//! must say what the file says.
//!
//! The tests walk the TOML tree, and ask each settings struct for its keys, instead of naming
//! keys, so a key added to or removed from a section (the cache's, as it is redesigned) is
//! checked without touching this file.

use std::path::Path;

use marquee_server::Settings;
use marquee_server::settings::Sources;
use toml::{Table, Value};

/// Keys `default.toml` deliberately sets to something else than the code falls back to. They
/// stay in place when a table around them is left out.
const SET_ON_PURPOSE: &[(&str, &str)] = &[
    (
        "database.pool.pool_name",
        "marquee-pool knows nothing of Marquee (STYLE.md rule 12), so its own default is `pool`; \
         Marquee's dashboards select pool=\"marquee\"",
    ),
    (
        "cache.namespace",
        "marquee-cache knows nothing of Marquee, so its own default is `cache:v1`; Marquee's \
         keys (and the waiting room's) live under `marquee:v1`",
    ),
    (
        "cache.name",
        "marquee-cache's own default is `default`; Marquee's metrics say cache=\"catalogue\"",
    ),
    (
        "cache.metrics_prefix",
        "marquee-cache's own default is `cache`; Marquee's dashboards and alerts read \
         marquee_cache_*",
    ),
];

/// Tables whose code default is defined for the table as a whole. A key left out of a table
/// that is otherwise set takes its struct's field default, not the table's (configuration.md,
/// "Defaults and partial tables"), so these are checked by leaving out the whole table only.
const WHOLE_TABLE_DEFAULTS: &[(&str, &str)] = &[
    (
        "cache_ttl.schedules",
        "a key left out of a partial group takes CachePolicy::default(), the `concert` values",
    ),
    (
        "cache_ttl.seats",
        "a key left out of a partial group takes CachePolicy::default(), the `concert` values",
    ),
];

fn repository_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn default_toml() -> Table {
    repository_file("config/default.toml")
        .parse()
        .expect("config/default.toml is TOML")
}

/// Loads settings with `table` as the only file, `default.toml`, and no variables.
fn load_with_default(table: &Table) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("default.toml"), toml::to_string(table)?)?;
    Settings::load_from(Sources {
        config_dir: Some(dir.path().to_owned()),
        ..Sources::default()
    })
}

/// Every table and key of `table`, as dotted paths, parents before their children.
fn paths(table: &Table, prefix: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        paths.push(path.clone());
        if let Value::Table(inner) = value {
            paths.extend(self::paths(inner, &path));
        }
    }
    paths
}

/// The keys (not tables) of `table`, as dotted paths with their values.
fn leaves(table: &Table) -> Vec<(String, Value)> {
    paths(table, "")
        .into_iter()
        .filter_map(|path| match get(table, &path) {
            Some(Value::Table(_)) | None => None,
            Some(value) => Some((path, value.clone())),
        })
        .collect()
}

/// The table that holds `path`'s last part, and that part.
fn split(path: &str) -> (impl Iterator<Item = &str>, &str) {
    let (parents, last) = path.rsplit_once('.').unwrap_or(("", path));
    (parents.split('.').filter(|part| !part.is_empty()), last)
}

fn get<'a>(table: &'a Table, path: &str) -> Option<&'a Value> {
    let (parents, last) = split(path);
    let mut table = table;
    for part in parents {
        table = table.get(part)?.as_table()?;
    }
    table.get(last)
}

/// Sets `path` to `value`, making the tables on the way.
fn insert(table: &mut Table, path: &str, value: Value) {
    let (parents, last) = split(path);
    let mut table = table;
    for part in parents {
        table = table
            .entry(part)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("the parents of a key are tables");
    }
    table.insert(last.to_owned(), value);
}

/// `table` with the table or key at `path` left out, apart from the keys set on purpose.
fn without(table: &Table, path: &str) -> Table {
    let mut reduced = table.clone();
    let (parents, last) = split(path);
    let mut parent = &mut reduced;
    for part in parents {
        parent = parent
            .get_mut(part)
            .and_then(Value::as_table_mut)
            .expect("the path is in the table");
    }
    parent.remove(last);
    for (kept, _) in SET_ON_PURPOSE {
        if let Some(value) = get(table, kept).filter(|_| kept.starts_with(&format!("{path}."))) {
            insert(&mut reduced, kept, value.clone());
        }
    }
    reduced
}

/// The lines of the two settings' pretty `Debug` output that differ, as `file` and `code`.
fn differences(file: &Settings, code: &Settings) -> String {
    let (file, code) = (format!("{file:#?}"), format!("{code:#?}"));
    file.lines()
        .zip(code.lines())
        .filter(|(file, code)| file != code)
        .map(|(file, code)| format!("  file: {}\n  code: {}", file.trim(), code.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// For every table and key of `default.toml` that the code can do without, leaving it out
/// gives the same settings as the file: the code's fallback is the file's value.
#[test]
fn leaving_a_key_out_of_default_toml_changes_nothing() {
    let file = default_toml();
    let full = load_with_default(&file).expect("config/default.toml loads");
    let mut drifts = Vec::new();
    let mut fallbacks = 0;
    for path in paths(&file, "") {
        let whole_table_only = WHOLE_TABLE_DEFAULTS
            .iter()
            .any(|(table, _)| path.starts_with(&format!("{table}.")));
        if whole_table_only {
            continue;
        }
        let on_purpose = SET_ON_PURPOSE.iter().any(|(key, _)| *key == path);
        match load_with_default(&without(&file, &path)) {
            Ok(settings) if on_purpose => {
                if settings == full {
                    drifts.push(format!(
                        "{path} is listed in SET_ON_PURPOSE, but the code's default is now the \
                         file's: remove it from the list"
                    ));
                }
            }
            Ok(settings) => {
                fallbacks += 1;
                if settings != full {
                    drifts.push(format!(
                        "{path}: the code's default differs from default.toml's:\n{}",
                        differences(&full, &settings)
                    ));
                }
            }
            // A required key has no default in the code: the file is its only source.
            Err(error) if format!("{error:#}").contains("missing configuration field") => {}
            Err(error) => drifts.push(format!(
                "{path}: without it, the settings do not load: {error:#}"
            )),
        }
    }
    assert!(drifts.is_empty(), "{}", drifts.join("\n"));
    assert!(
        fallbacks > 0,
        "no key of default.toml has a code default: the walk checked nothing"
    );
}

/// A key no settings struct has, to make one list the keys it knows.
const PROBE: &str = "not_a_setting";

/// The keys the code knows in the table at `path` (empty: the top level), as its settings
/// struct lists them when it refuses an unknown one.
fn known_keys(file: &Table, path: &str) -> Vec<String> {
    let mut probed = file.clone();
    let key = if path.is_empty() {
        PROBE.to_owned()
    } else {
        format!("{path}.{PROBE}")
    };
    insert(&mut probed, &key, Value::Integer(0));
    let error = format!(
        "{:#}",
        load_with_default(&probed).expect_err("an unknown key is refused")
    );
    let expected = error
        .split_once("expected")
        .map(|(_, rest)| rest.split(" for key").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("{key}: {error}"));
    code_spans(expected)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Every key the code knows is in `default.toml`, unless configuration.md says the file leaves
/// it unset: so the file shows every setting with its default, and a key added to a settings
/// struct (the cache's, as it changes) is not missed by the tests above.
#[test]
fn default_toml_sets_every_key_the_code_knows() {
    let file = default_toml();
    let documented = documented_defaults(&repository_file("docs/configuration.md"));
    let unset = |key: &str| {
        documented.iter().any(|statement| {
            statement.default == Stated::Unset && names(&statement.key, key).is_some()
        })
    };
    let tables = std::iter::once(String::new()).chain(
        paths(&file, "")
            .into_iter()
            .filter(|path| matches!(get(&file, path), Some(Value::Table(_)))),
    );
    let mut missing = Vec::new();
    let mut known = 0;
    for table in tables {
        for key in known_keys(&file, &table) {
            known += 1;
            let path = if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            };
            if get(&file, &path).is_none() && !unset(&path) {
                missing.push(path);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the code knows these keys, but default.toml does not set them (nor does \
         configuration.md say it leaves them unset): {missing:?}"
    );
    assert!(known > 50, "the probe read only {known} keys");
}

/// A default as `docs/configuration.md` states it.
#[derive(Debug, Clone, PartialEq)]
enum Stated {
    /// A literal value, such as `30s`; "empty" is the empty string.
    Value(String),
    /// Not set in `default.toml` (the code decides, such as `minimum_idle`).
    Unset,
    /// Described in words, or in another table ("Defaults in the table above").
    InWords,
}

/// Where the document states a default.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    /// A row of a table with a `Key` and a `Default` column ("Keys at a glance").
    KeyTable,
    /// A cell of a table with one column per name of a placeholder, such as `<group>`.
    NameTable,
    /// The key's own section, with its heading.
    Section(String),
}

/// One statement of a key's default. `key` may hold a placeholder segment such as `<group>`;
/// `overrides` are the values it states for particular names of that segment.
#[derive(Debug, PartialEq)]
struct DocumentedDefault {
    key: String,
    default: Stated,
    overrides: Vec<(String, String)>,
    place: Place,
}

/// The text of each `…` span in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Reads a stated default: a leading `value`, `empty …`, `unset …` or `Not set in …`.
fn stated(text: &str) -> Stated {
    let text = text.trim_start_matches(':').trim_start();
    if text.starts_with('`') {
        Stated::Value(code_spans(text)[0].to_owned())
    } else if text.starts_with("empty") {
        Stated::Value(String::new())
    } else if text.starts_with("unset") || text.starts_with("Not set") {
        Stated::Unset
    } else {
        Stated::InWords
    }
}

/// A section's default, from its first bullet, such as "- Variable: … Default `30s`."
fn stated_in_section(body: &[&str]) -> Stated {
    let first_bullet: Vec<&str> = body
        .iter()
        .skip_while(|line| !line.starts_with("- "))
        .enumerate()
        .take_while(|(at, line)| *at == 0 || !line.starts_with("- "))
        .map(|(_, line)| line.trim())
        .collect();
    let bullet = first_bullet.join(" ");
    match ["Default ", "Default:", "Not set"]
        .iter()
        .find_map(|word| bullet.find(word))
    {
        Some(at) if bullet[at..].starts_with("Default") => stated(&bullet[at + "Default".len()..]),
        Some(at) => stated(&bullet[at..]),
        None => Stated::InWords,
    }
}

fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(|cell| cell.trim().to_owned()).collect()
}

/// Every default the document states: in its tables and in the sections of its keys.
fn documented_defaults(markdown: &str) -> Vec<DocumentedDefault> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut defaults = Vec::new();
    // The `[section.<placeholder>]` of the current `##` heading, for per-name tables.
    let mut section = String::new();
    let mut line = 0;
    while line < lines.len() {
        let text = lines[line];
        if text.starts_with('|') {
            let end = lines[line..]
                .iter()
                .position(|next| !next.starts_with('|'))
                .map_or(lines.len(), |offset| line + offset);
            defaults.extend(table_defaults(&lines[line..end], &section));
            line = end;
            continue;
        }
        if let Some(heading) = text.strip_prefix("## ") {
            section = code_spans(heading)
                .first()
                .map(|span| span.trim_matches(['[', ']']).to_owned())
                .unwrap_or_default();
        }
        if let Some(heading) = text.strip_prefix("### ") {
            let end = lines[line + 1..]
                .iter()
                .position(|next| next.starts_with('#'))
                .map_or(lines.len(), |offset| line + 1 + offset);
            let default = stated_in_section(&lines[line + 1..end]);
            let keys = code_spans(heading)
                .into_iter()
                .filter(|span| span.contains('.') && !span.contains(' '));
            defaults.extend(keys.map(|key| DocumentedDefault {
                key: key.to_owned(),
                default: default.clone(),
                overrides: Vec::new(),
                place: Place::Section(heading.to_owned()),
            }));
        }
        line += 1;
    }
    defaults
}

/// The defaults a markdown table states, if it is one that states defaults.
fn table_defaults(rows: &[&str], section: &str) -> Vec<DocumentedDefault> {
    let header = cells(rows[0]);
    if header[0] != "Key" || rows.len() < 3 {
        return Vec::new();
    }
    let body = rows[2..].iter().map(|row| cells(row));
    if let Some(column) = header.iter().position(|cell| cell == "Default") {
        // A cell such as: `200s`; `schedules` `5s`, `seats` `2s`
        return body
            .map(|row| {
                let mut parts = row[column].split(';');
                let default = stated(parts.next().unwrap_or_default());
                let overrides = parts
                    .flat_map(|part| part.split(','))
                    .flat_map(|part| {
                        let spans = code_spans(part);
                        let (value, names) = spans.split_last().unwrap_or((&"", &[]));
                        names
                            .iter()
                            .map(|name| ((*name).to_owned(), (*value).to_owned()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                DocumentedDefault {
                    key: code_spans(&row[0]).concat(),
                    default,
                    overrides,
                    place: Place::KeyTable,
                }
            })
            .collect();
    }
    // Under a heading such as `[cache_ttl.<group>]`: a column per group.
    let names: Vec<String> = header[1..]
        .iter()
        .map(|cell| code_spans(cell).concat())
        .collect();
    let Some((prefix, _placeholder)) = section.rsplit_once('<') else {
        return Vec::new();
    };
    if names.iter().any(String::is_empty) {
        return Vec::new();
    }
    body.flat_map(|row| {
        let key = code_spans(&row[0]).concat();
        names
            .iter()
            .zip(&row[1..])
            .map(|(name, cell)| DocumentedDefault {
                key: format!("{prefix}{name}.{key}"),
                default: stated(cell),
                overrides: Vec::new(),
                place: Place::NameTable,
            })
            .collect::<Vec<_>>()
    })
    .collect()
}

/// Whether the documented `pattern` names `key`, and if so, which name its placeholder (such
/// as `<group>`) stands for there.
fn names(pattern: &str, key: &str) -> Option<Option<String>> {
    let (pattern, key): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), key.split('.').collect());
    if pattern.len() != key.len() {
        return None;
    }
    let mut name = None;
    for (expected, actual) in pattern.iter().zip(&key) {
        if expected.starts_with('<') && expected.ends_with('>') {
            name = Some((*actual).to_owned());
        } else if expected != actual {
            return None;
        }
    }
    Some(name)
}

/// Whether the documented text says `value`: durations by their length, other values by what
/// they parse to as TOML.
fn says(documented: &str, value: &Value) -> bool {
    match value {
        Value::String(text) => {
            match (
                humantime::parse_duration(documented),
                humantime::parse_duration(text),
            ) {
                (Ok(documented), Ok(value)) => documented == value,
                _ => documented == text,
            }
        }
        value => format!("v = {documented}")
            .parse::<Table>()
            .is_ok_and(|parsed| parsed.get("v") == Some(value)),
    }
}

#[test]
fn the_configuration_reference_states_default_toml() {
    let file = leaves(&default_toml());
    let documented = documented_defaults(&repository_file("docs/configuration.md"));
    let mut drifts = Vec::new();

    // Every key of the file has a row in the table at a glance and a section of its own.
    for (key, _) in &file {
        let in_table = |statement: &&DocumentedDefault| statement.place == Place::KeyTable;
        let in_section =
            |statement: &&DocumentedDefault| matches!(statement.place, Place::Section(_));
        for (what, listed) in [
            (
                "row in \"Keys at a glance\"",
                documented
                    .iter()
                    .filter(in_table)
                    .any(|s| names(&s.key, key).is_some()),
            ),
            (
                "section",
                documented
                    .iter()
                    .filter(in_section)
                    .any(|s| names(&s.key, key).is_some()),
            ),
        ] {
            if !listed {
                drifts.push(format!(
                    "{key} is in default.toml but has no {what} in configuration.md"
                ));
            }
        }
    }

    // Every documented default is the file's value, and every documented key is in the file
    // unless the document says the file leaves it unset.
    for statement in &documented {
        let found: Vec<_> = file
            .iter()
            .filter_map(|(key, value)| names(&statement.key, key).map(|name| (key, value, name)))
            .collect();
        let place = &statement.place;
        match &statement.default {
            Stated::Unset if !found.is_empty() => drifts.push(format!(
                "{} ({place:?}): documented as not set, but default.toml sets it",
                statement.key
            )),
            Stated::Unset => {}
            _ if found.is_empty() => drifts.push(format!(
                "{} ({place:?}): documented, but not in default.toml",
                statement.key
            )),
            Stated::InWords => {}
            Stated::Value(general) => {
                for (key, value, name) in found {
                    let expected = statement
                        .overrides
                        .iter()
                        .find(|(overridden, _)| Some(overridden) == name.as_ref())
                        .map_or(general, |(_, value)| value);
                    if !says(expected, value) {
                        drifts.push(format!(
                            "{key}: configuration.md ({place:?}) says `{expected}`, default.toml {value}"
                        ));
                    }
                }
            }
        }
    }
    assert!(drifts.is_empty(), "{}", drifts.join("\n"));
}

/// The reader understands each way the document states a default; if it read nothing, the
/// test above would pass without checking anything.
#[test]
fn the_reference_reader_reads_each_way_of_stating_a_default() {
    let markdown = "\
## `[t.<group>]`

| Key | Type | Default | `production.toml` |
|---|---|---|---|
| `a.b` | integer | `0` (one per CPU) | |
| `a.c` | URL | empty (no Redis) | `redis://x` |
| `a.d` | integer | unset: equal to `a.b` | |
| `a.e` | string | a public development value | |
| `t.<group>.f` | duration | `60s`; `schedules` and `seats` `10s`, `x` `1s` | |

| Key | `concert` | `seats` |
|---|---|---|
| `base_ttl` | `200s` | `2s` |

### `a.g` and `a.h`

- Variables: `X` and `Y`. Default: empty, which turns
  the check off.
- Default `wrong`: only the first bullet counts.

### `a.i`

- Variable: `Z`. Default:
  `secret`; `production.toml`: the empty string.

### `a.j`

- Variable: `W`. Not set in `default.toml`; unset means
  the code decides.

### `a.k`

- Variable: `V`. Defaults in the table above.
";
    let value = |text: &str| Stated::Value(text.to_owned());
    let statement =
        |key: &str, default: Stated, overrides: &[(&str, &str)], place: Place| DocumentedDefault {
            key: key.to_owned(),
            default,
            overrides: overrides
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            place,
        };
    let section = |heading: &str| Place::Section(heading.to_owned());
    assert_eq!(
        documented_defaults(markdown),
        vec![
            statement("a.b", value("0"), &[], Place::KeyTable),
            statement("a.c", value(""), &[], Place::KeyTable),
            statement("a.d", Stated::Unset, &[], Place::KeyTable),
            statement("a.e", Stated::InWords, &[], Place::KeyTable),
            statement(
                "t.<group>.f",
                value("60s"),
                &[("schedules", "10s"), ("seats", "10s"), ("x", "1s")],
                Place::KeyTable
            ),
            statement("t.concert.base_ttl", value("200s"), &[], Place::NameTable),
            statement("t.seats.base_ttl", value("2s"), &[], Place::NameTable),
            statement("a.g", value(""), &[], section("`a.g` and `a.h`")),
            statement("a.h", value(""), &[], section("`a.g` and `a.h`")),
            statement("a.i", value("secret"), &[], section("`a.i`")),
            statement("a.j", Stated::Unset, &[], section("`a.j`")),
            statement("a.k", Stated::InWords, &[], section("`a.k`")),
        ]
    );
    assert!(says("10m", &Value::String("600s".to_owned())));
    assert!(says("marquee:v1", &Value::String("marquee:v1".to_owned())));
    assert!(says("1.0", &Value::Float(1.0)));
    assert!(!says("10", &Value::Integer(100)));
    assert!(!says("true", &Value::Boolean(false)));
    assert_eq!(
        names("t.<group>.f", "t.seats.f"),
        Some(Some("seats".to_owned()))
    );
    assert_eq!(names("t.<group>.f", "t.seats.g"), None);
    assert_eq!(names("a.b", "a.b"), Some(None));
}
