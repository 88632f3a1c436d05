//! Templates: the minijinja environment shared by the acknowledgements and the digest.
//!
//! Templates are built into the binary; `replies.templates_dir` may hold a file of the same
//! name to replace any of them. Undefined variables are errors, and every error names the file
//! (the override's path, or the built-in name) and the line, so a broken template stops the start
//! with something an admin can act on.
//!
//! May: read the override directory at start. Rendering itself is pure.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use minijinja::{Environment, Value};

use crate::lang::Lang;

#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// A set of templates: the built-in sources, each replaced by the file of the same name in the
/// override directory when there is one.
///
/// Every template is compiled once at start (its errors stop the start), then compiled again at
/// its first use and kept until [`Templates::release`]: compiled, the daemon's templates take
/// about 0.6 MB of heap, more than anything else it keeps while idle, and an idle daemon needs
/// none of them (the memory given back after work, `memory.rs`). Compiling one again costs a fraction of a millisecond.
pub(crate) struct Templates {
    env: RwLock<Environment<'static>>,
    /// What the environment's loader compiles from: built-in sources are borrowed from the
    /// binary, overrides and sources added at start are owned.
    sources: Arc<RwLock<HashMap<String, Cow<'static, str>>>>,
    overrides: Option<PathBuf>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("overrides", &self.overrides).finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles `built_in` (`(name, source)`), with the files of `overrides` in their place.
    pub(crate) fn load(
        built_in: &[(&'static str, &'static str)],
        overrides: Option<&Path>,
    ) -> Result<Templates, TemplateError> {
        let sources: Arc<RwLock<HashMap<String, Cow<'static, str>>>> = Arc::default();
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let known = Arc::clone(&sources);
        env.set_loader(move |name| Ok(read(&known).get(name).map(|source| source.to_string())));
        let mut templates = Templates { env: RwLock::new(env), sources, overrides: overrides.map(Path::to_path_buf) };
        for (name, builtin) in built_in {
            let source = match overrides {
                Some(dir) => read_override(dir, name)?.map_or(Cow::Borrowed(*builtin), Cow::Owned),
                None => Cow::Borrowed(*builtin),
            };
            templates.add(name, source)?;
        }
        Ok(templates)
    }

    /// Adds one template from a string (a subject line from the configuration, say), compiled
    /// at once so that its errors show now.
    pub(crate) fn add(&mut self, name: &str, source: impl Into<Cow<'static, str>>) -> Result<(), TemplateError> {
        self.sources.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), source.into());
        let env = self.env.get_mut().unwrap_or_else(PoisonError::into_inner);
        env.remove_template(name);
        env.get_template(name).map(drop).map_err(|e| TemplateError { name: self.location(name), message: describe(&e) })
    }

    /// Drops every compiled template; each is compiled again at its next use.
    pub(crate) fn release(&self) {
        self.env.write().unwrap_or_else(PoisonError::into_inner).clear_templates();
    }

    /// Renders one whole template.
    pub(crate) fn render(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        let env = read(&self.env);
        env.get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| TemplateError { name: self.location(name), message: describe(&e) })
    }

    /// Renders the named blocks of one template.
    pub(crate) fn render_blocks<const N: usize>(
        &self,
        name: &str,
        blocks: [&str; N],
        ctx: &Value,
    ) -> Result<[String; N], TemplateError> {
        let fail = |e: minijinja::Error| TemplateError { name: self.location(name), message: describe(&e) };
        let env = read(&self.env);
        let template = env.get_template(name).map_err(fail)?;
        let mut captured = template.render_captured(ctx).map_err(fail)?;
        captured
            .with_state_mut(|state| {
                let mut out: [String; N] = std::array::from_fn(|_| String::new());
                for (slot, block) in out.iter_mut().zip(blocks) {
                    *slot = state.render_block(block)?;
                }
                Ok::<_, minijinja::Error>(out)
            })
            .map_err(fail)
    }

    /// Where a template comes from, as an admin would look for it.
    fn location(&self, name: &str) -> String {
        match &self.overrides {
            Some(dir) if dir.join(name).is_file() => dir.join(name).display().to_string(),
            _ => format!("templates/{name} (built in)"),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn read_override(dir: &Path, name: &str) -> Result<Option<String>, TemplateError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TemplateError { name: path.display().to_string(), message: e.to_string() }),
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {}", e.detail().unwrap_or(&e.kind().to_string())),
        None => e.to_string(),
    }
}

/// A moment as people of that language write it, in the organisation's zone.
pub(crate) fn format_time(t: DateTime<Tz>, lang: Lang) -> String {
    match lang {
        Lang::En => t.format("%B %-d, %Y at %H:%M (%Z)").to_string(),
        Lang::Fr => t.format("%d/%m/%Y à %H:%M (%Z)").to_string(),
    }
}

/// A date as people of that language write it.
pub(crate) fn format_date(d: NaiveDate, lang: Lang) -> String {
    match lang {
        Lang::En => d.format("%B %-d, %Y").to_string(),
        Lang::Fr => d.format("%d/%m/%Y").to_string(),
    }
}

/// Subjects are one line, with single spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &[(&str, &str)] = &[
        ("layout.j2", "<{% block body %}{% endblock %}>"),
        ("hello.j2", "{% extends 'layout.j2' %}{% block body %}Hello {{ name }}{% endblock %}"),
    ];

    fn compiled(t: &Templates) -> usize {
        t.env.read().unwrap().templates().count()
    }

    #[test]
    fn released_templates_are_dropped_and_render_the_same_again() {
        let t = Templates::load(SOURCES, None).unwrap();
        let ctx = minijinja::context! { name => "Ada" };
        let first = t.render("hello.j2", &ctx).unwrap();
        assert_eq!(first, "<Hello Ada>");
        assert_eq!(compiled(&t), 2, "the template and its layout, kept for the next render");
        t.release();
        assert_eq!(compiled(&t), 0);
        assert_eq!(t.render("hello.j2", &ctx).unwrap(), first);
    }

    #[test]
    fn errors_still_show_at_load_naming_the_template_and_line() {
        let e = Templates::load(&[("good.j2", "fine"), ("bad.j2", "line one\n{% if %}")], None).unwrap_err();
        assert_eq!(e.name, "templates/bad.j2 (built in)");
        assert!(e.message.starts_with("line 2:"), "{}", e.message);
        let mut t = Templates::load(SOURCES, None).unwrap();
        let e = t.add("subject", "{{ unclosed").unwrap_err();
        assert_eq!(e.name, "templates/subject (built in)");
    }

    #[test]
    fn an_override_replaces_the_built_in_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hello.j2"),
            "{% extends 'layout.j2' %}{% block body %}Bonjour {{ name }}{% endblock %}",
        )
        .unwrap();
        let mut t = Templates::load(SOURCES, Some(dir.path())).unwrap();
        let ctx = minijinja::context! { name => "Ada" };
        assert_eq!(t.render("hello.j2", &ctx).unwrap(), "<Bonjour Ada>");
        // A source added later replaces the compiled template of that name too.
        t.add("hello.j2", "Salut {{ name }}").unwrap();
        assert_eq!(t.render("hello.j2", &ctx).unwrap(), "Salut Ada");
    }
}
