//! No module cycles inside a crate, checked over the sources rather than hoped for in review.
//!
//! Module A depends on module B when A names an item of B (`crate::b::Item`, `use crate::b`,
//! or an item the crate root re-exports from B). Two modules that depend on each other,
//! directly or through others, can only be read and changed together: the type they share
//! belongs in a module of its own, or with the one that owns it. The crate root declares
//! every module, so edges to and from it are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The crates whose modules are checked: every library crate of the workspace.
const CHECKED: &[&str] = crate::architecture::LIBRARY_CRATES;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The `src/` folder of a workspace crate.
fn src_of(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The first name under `crate::` that each path of a source file uses.
#[derive(Default)]
struct CrateNames(BTreeSet<String>);

impl CrateNames {
    /// The names a `use` tree brings in from directly under its root.
    fn heads(tree: &syn::UseTree, into: &mut BTreeSet<String>) {
        match tree {
            syn::UseTree::Path(path) => {
                into.insert(path.ident.to_string());
            }
            syn::UseTree::Name(name) => {
                into.insert(name.ident.to_string());
            }
            syn::UseTree::Rename(rename) => {
                into.insert(rename.ident.to_string());
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    Self::heads(tree, into);
                }
            }
            syn::UseTree::Glob(_) => {}
        }
    }

    /// `crate :: name` in a macro's tokens, which syn leaves unparsed.
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (at, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.scan(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" => {
                    if let [
                        TokenTree::Punct(a),
                        TokenTree::Punct(b),
                        TokenTree::Ident(name),
                        ..,
                    ] = &tokens[at + 1..]
                        && a.as_char() == ':'
                        && b.as_char() == ':'
                    {
                        self.0.insert(name.to_string());
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for CrateNames {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if let (Some(first), Some(second)) = (segments.next(), segments.next())
            && first.ident == "crate"
        {
            self.0.insert(second.ident.to_string());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if let syn::UseTree::Path(path) = &item.tree
            && path.ident == "crate"
        {
            Self::heads(&path.tree, &mut self.0);
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// For each top-level module of the crate at `src`, the modules it names. A file in a folder
/// counts for the top-level module the folder belongs to.
fn module_graph(src: &Path) -> Graph {
    let root = parse(&src.join("lib.rs"));
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut modules = BTreeSet::new();
    for item in &root.items {
        match item {
            syn::Item::Mod(module) => {
                modules.insert(module.ident.to_string());
            }
            syn::Item::Use(item) => {
                if let syn::UseTree::Path(path) = &item.tree {
                    let mut names = BTreeSet::new();
                    CrateNames::heads(&path.tree, &mut names);
                    for name in names {
                        owner.insert(name, path.ident.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let top = relative.components().next().unwrap().as_os_str();
        let module = Path::new(top).file_stem().unwrap().to_string_lossy();
        if !modules.contains(module.as_ref()) {
            continue;
        }
        let mut names = CrateNames::default();
        names.visit_file(&parse(&file));
        let edges = graph.entry(module.to_string()).or_default();
        for name in names.0 {
            let target = owner.get(&name).cloned().unwrap_or(name);
            if modules.contains(&target) && target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

/// Pairs of modules that depend on each other, directly or through others.
fn cycles(graph: &Graph) -> Vec<(String, String)> {
    let reach: BTreeMap<&String, BTreeSet<String>> = graph
        .keys()
        .map(|module| (module, reachable(graph, module)))
        .collect();
    let mut pairs = Vec::new();
    for (a, from_a) in &reach {
        for b in from_a {
            if *a < b && reach.get(b).is_some_and(|from_b| from_b.contains(*a)) {
                pairs.push((a.to_string(), b.clone()));
            }
        }
    }
    pairs
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let mut found = BTreeMap::new();
    for krate in CHECKED {
        let graph = module_graph(&src_of(krate));
        assert!(graph.len() > 2, "{krate}: found modules {graph:?}");
        let cycles = cycles(&graph);
        if !cycles.is_empty() {
            found.insert(*krate, cycles);
        }
    }
    assert!(
        found.is_empty(),
        "these modules depend on each other: {found:?}"
    );
}

/// The check itself: it sees `use crate::{a, b}`, paths in types and macros, and names the
/// crate root re-exports.
#[test]
fn the_module_check_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("lib.rs", "mod a; mod b; mod c; pub use c::Gamma;");
    write("a.rs", "pub struct Alpha(crate::b::Beta);");
    write(
        "b.rs",
        "pub struct Beta; fn f() { tracing::info!(x = crate::Gamma); }",
    );
    write("c.rs", "use crate::{a::Alpha}; pub struct Gamma;");
    let graph = module_graph(dir.path());
    assert_eq!(graph["a"], BTreeSet::from(["b".to_owned()]));
    assert_eq!(graph["b"], BTreeSet::from(["c".to_owned()]));
    assert_eq!(graph["c"], BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycles(&graph),
        [
            ("a".to_owned(), "b".to_owned()),
            ("a".to_owned(), "c".to_owned()),
            ("b".to_owned(), "c".to_owned())
        ]
    );
}
