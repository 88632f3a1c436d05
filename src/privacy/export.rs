//! `mailroom candidate export`: one person's data as a ZIP (GDPR art. 15, access, and art. 20,
//! portability).
//!
//! ```text
//! resume.txt | summary.txt          what follows, in French or English, for the person
//! metadata.json                     what the store holds about them (applications, decisions, retention)
//! documents/<posting>/<file>        every document filed from their applications
//! messages/<posting>/<file>.eml     their messages, as they arrived
//! acknowledgements/NN-<kind>.txt    the acknowledgements mailroom sent them (and .html)
//! ```
//!
//! Exactly that person's data and nobody else's: their folders hold only them (a folder is named
//! by a hash of the address), and only the outbox entries addressed to them are read (never the
//! team's digests, which list others). The file is written under a temporary name, made durable,
//! then renamed, 0600.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::context;
use serde::Serialize;

use super::PrivacyError;
use super::policy::Policy;
use super::zip::ZipWriter;
use crate::config::Config;
use crate::lang::Lang;
use crate::render::{self, TemplateError, Templates};
use crate::store::PrivacyStore;

const BUILT_IN: &[(&str, &str)] = &[
    ("fr/export.txt.j2", include_str!("../../templates/fr/export.txt.j2")),
    ("en/export.txt.j2", include_str!("../../templates/en/export.txt.j2")),
];

/// What an export holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    /// Every path in the archive.
    pub entries: Vec<String>,
    pub applications: usize,
    pub documents: usize,
    pub messages: usize,
    pub acknowledgements: usize,
    /// Files the store knows that were not on the disk (removed by hand?), said in the summary too.
    pub missing: Vec<String>,
    pub bytes: u64,
}

/// Builds exports; made once per command.
pub struct Exporter {
    templates: Templates,
    policy: Policy,
    data_dir: PathBuf,
    organisation: String,
    controller: String,
    contact: String,
    titles: BTreeMap<String, String>,
    tz: Tz,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AckMeta {
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    state: String,
    kind: Option<String>,
    subject: Option<String>,
    file: Option<String>,
}

impl Exporter {
    pub fn new(cfg: &Config) -> Result<Exporter, TemplateError> {
        Ok(Exporter {
            templates: Templates::load(BUILT_IN, cfg.replies.templates_dir.as_deref())?,
            policy: Policy::from_config(cfg),
            data_dir: cfg.storage.data_dir.clone(),
            organisation: cfg.identity.organisation.clone(),
            controller: cfg.controller().to_owned(),
            contact: cfg.privacy_contact().to_owned(),
            titles: cfg.postings.iter().map(|p| (p.slug.clone(), p.title.clone())).collect(),
            tz: cfg.identity.timezone(),
        })
    }

    /// Writes `out` (which must not exist) with everything the store and the data root hold about
    /// `address`, and records the export in the audit trail.
    pub fn export<S: PrivacyStore>(
        &self,
        store: &S,
        address: &str,
        lang: Lang,
        out: &Path,
        command: &str,
        now: DateTime<Utc>,
    ) -> Result<ExportSummary, PrivacyError> {
        let person = store.person(address)?.ok_or_else(|| PrivacyError::Unknown(address.to_owned()))?;
        let rows = store.filed_rows(address)?;
        let acks = store.acknowledgements_to(address)?;
        let keep = self.policy.keep(&person);
        let mut files: Vec<(String, Vec<u8>, DateTime<Utc>)> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut summary = ExportSummary { applications: rows.len(), ..Default::default() };
        let mut add = |files: &mut Vec<(String, Vec<u8>, DateTime<Utc>)>,
                       summary: &mut ExportSummary,
                       zip_path: String,
                       folder: &str,
                       name: &str,
                       at: DateTime<Utc>|
         -> bool {
            if !seen.insert(zip_path.clone()) {
                return false;
            }
            // Names come from our own store, already made safe by filing; checked all the same.
            if name.contains(['/', '\\']) || name.starts_with('.') {
                summary.missing.push(zip_path);
                return false;
            }
            match fs::read(self.data_dir.join(folder).join(name)) {
                Ok(bytes) => {
                    files.push((zip_path, bytes, at));
                    true
                }
                Err(_) => {
                    summary.missing.push(zip_path);
                    false
                }
            }
        };
        let mut applications_view = Vec::new();
        let mut applications_meta = Vec::new();
        for row in &rows {
            let Some(app) = &row.application else { continue };
            let posting = &app.posting;
            let mut docs_view = Vec::new();
            for d in &app.documents {
                let Some(name) = &d.filename else { continue };
                let zip_path = format!("documents/{posting}/{name}");
                if add(&mut files, &mut summary, zip_path.clone(), &row.folder, name, app.received_at) {
                    summary.documents += 1;
                }
                docs_view
                    .push(context! { label => d.kind.label(lang), file => zip_path, original_name => d.original_name });
            }
            if add(
                &mut files,
                &mut summary,
                format!("messages/{posting}/{}", app.eml),
                &row.folder,
                &app.eml,
                app.received_at,
            ) {
                summary.messages += 1;
            }
            applications_view.push(context! {
                posting => self.titles.get(posting).cloned().unwrap_or_else(|| posting.clone()),
                received_at => render::format_time(app.received_at.with_timezone(&self.tz), lang),
                subject => app.subject,
                documents => docs_view,
                missing => app.missing.iter().map(|k| k.label(lang)).collect::<Vec<_>>(),
                reply => row.reply.describe(lang),
            });
            applications_meta.push(serde_json::json!({
                "folder": row.folder,
                "application": app,
                "reply": row.reply,
            }));
        }
        let mut acks_view = Vec::new();
        let mut acks_meta = Vec::new();
        for (i, a) in acks.iter().enumerate() {
            let mut file = None;
            if let Some(mail) = &a.mail {
                let stem = format!("acknowledgements/{:02}-{}", i + 1, mail.kind.as_str());
                let text = format!(
                    "To: {}\nSubject: {}\nQueued: {}\nSent: {}\nState: {}\n\n{}",
                    mail.to,
                    mail.subject,
                    a.created_at.to_rfc3339(),
                    a.sent_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                    a.state,
                    mail.text
                );
                files.push((format!("{stem}.txt"), text.into_bytes(), a.created_at));
                if let Some(html) = &mail.html {
                    files.push((format!("{stem}.html"), html.clone().into_bytes(), a.created_at));
                }
                file = Some(format!("{stem}.txt"));
                acks_view.push(context! {
                    date => render::format_time(a.created_at.with_timezone(&self.tz), lang),
                    subject => mail.subject,
                    state => a.state,
                    file => file,
                });
            }
            acks_meta.push(AckMeta {
                created_at: a.created_at,
                sent_at: a.sent_at,
                state: a.state.clone(),
                kind: a.mail.as_ref().map(|m| m.kind.as_str().to_owned()),
                subject: a.mail.as_ref().map(|m| m.subject.clone()),
                file,
            });
        }
        summary.acknowledgements = acks_meta.len();
        let metadata = serde_json::json!({
            "exported_at": now,
            "controller": self.controller,
            "contact": self.contact,
            "candidate": { "email": person.address, "name": person.name },
            "retention": keep,
            "consent_at": person.consent_at,
            "hold": person.hold,
            "applications": applications_meta,
            "acknowledgements": acks_meta,
        });
        files.push(("metadata.json".into(), serde_json::to_vec_pretty(&metadata).expect("metadata serialises"), now));
        let text = self.templates.render(
            &format!("{lang}/export.txt.j2"),
            &context! {
                organisation => self.organisation,
                controller => self.controller,
                contact => self.contact,
                exported_at => render::format_time(now.with_timezone(&self.tz), lang),
                candidate => context! { name => person.name, email => person.address },
                applications => applications_view,
                acknowledgements => acks_view,
                retention => keep.describe(lang, self.tz),
                consent_at => person.consent_at.map(|t| render::format_date(t.with_timezone(&self.tz).date_naive(), lang)),
                missing => summary.missing,
            },
        )?;
        let readme = lang.pick("resume.txt", "summary.txt");
        files.insert(0, (readme.to_owned(), text.into_bytes(), now));
        summary.entries = files.iter().map(|(p, _, _)| p.clone()).collect();
        summary.bytes = write_zip(out, &files)?;
        store.record_audit(
            "export",
            command,
            Some(&store.keyed(address)?),
            &serde_json::json!({
                "applications": summary.applications,
                "documents": summary.documents,
                "messages": summary.messages,
                "acknowledgements": summary.acknowledgements,
                "missing": summary.missing.len(),
                "bytes": summary.bytes,
            }),
            now,
        )?;
        Ok(summary)
    }

    /// Proves the summary templates with a sample, as the replies' are at start.
    pub fn check(&self) -> Result<(), TemplateError> {
        for lang in Lang::ALL {
            self.templates.render(
                &format!("{lang}/export.txt.j2"),
                &context! {
                    organisation => self.organisation, controller => self.controller, contact => self.contact,
                    exported_at => "-", candidate => context! { name => "Jeanne Dupré", email => "jeanne@example.test" },
                    applications => vec![context! { posting => "Stage", received_at => "-", subject => "Candidature",
                        documents => vec![context! { label => "CV", file => "documents/x/CV.pdf", original_name => "cv.pdf" }],
                        missing => vec!["lettre"], reply => "-" }],
                    acknowledgements => vec![context! { date => "-", subject => "Bien reçu", state => "sent", file => "a.txt" }],
                    retention => "-", consent_at => "-", missing => vec!["documents/x/y.pdf"],
                },
            )?;
        }
        Ok(())
    }
}

/// Writes the archive next to `out` under a temporary name, makes it durable, renames it.
fn write_zip(out: &Path, files: &[(String, Vec<u8>, DateTime<Utc>)]) -> Result<u64, PrivacyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PrivacyError::Io { path, source }
    };
    if out.exists() {
        return Err(PrivacyError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists already; choose another name"),
        });
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export.zip".into());
    let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| -> Result<u64, PrivacyError> {
        let mut options = fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&tmp).map_err(io(&tmp))?;
        let mut zip = ZipWriter::new(BufWriter::new(file));
        for (path, bytes, at) in files {
            zip.add(path, bytes, *at).map_err(io(out))?;
        }
        let mut buffered = zip.finish().map_err(io(out))?;
        buffered.flush().map_err(io(&tmp))?;
        let file = buffered.into_inner().map_err(|e| PrivacyError::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io(&tmp))?;
        let len = file.metadata().map_err(io(&tmp))?.len();
        fs::rename(&tmp, out).map_err(io(out))?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(len)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
