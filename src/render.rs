//! Templates: the minijinja environment shared by the acknowledgements and the digest.
//!
//! Templates are built into the binary; `replies.templates_dir` may hold a file of the same
//! name to replace any of them. Undefined variables are errors, and every error names the file
//! (the override's path, or the built-in name) and the line, so a broken template stops the start
//! with something an admin can act on.
//!
//! May: read the override directory at start. Rendering itself is pure.

use std::path::{Path, PathBuf};

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
pub(crate) struct Templates {
    env: Environment<'static>,
    overrides: Option<PathBuf>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("overrides", &self.overrides).finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles `built_in` (`(name, source)`), with the files of `overrides` in their place.
    pub(crate) fn load(built_in: &[(&str, &str)], overrides: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut templates = Templates { env: Environment::new(), overrides: overrides.map(Path::to_path_buf) };
        templates.env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, builtin) in built_in {
            let source = match overrides {
                Some(dir) => read_override(dir, name)?.unwrap_or_else(|| builtin.to_string()),
                None => builtin.to_string(),
            };
            templates.add(name, source)?;
        }
        Ok(templates)
    }

    /// Adds one template from a string (a subject line from the configuration, say).
    pub(crate) fn add(&mut self, name: &str, source: String) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(name.to_owned(), source)
            .map_err(|e| TemplateError { name: self.location(name), message: describe(&e) })
    }

    /// Renders one whole template.
    pub(crate) fn render(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.env
            .get_template(name)
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
        let template = self.env.get_template(name).map_err(fail)?;
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
