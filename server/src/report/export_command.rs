//! `alliance export`: writes a research export from the store, or from a
//! running service through `GET /api/admin/export`, with its codebook and
//! SPSS syntax on request.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::ReportFilter;
use super::export::{self, ExportError, ExportOptions, Layout};
use crate::cli::CliError;
use crate::config::{RawSettings, Settings};
use crate::routes::questionnaire::time_text;
use crate::startup;
use crate::store::Store;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LayoutArg {
    /// One row per chat, both roles side by side.
    Wide,
    /// One row per chat × role × item, for every started response.
    Long,
    /// One row per stratum: overall, then each breakdown cell.
    Funnel,
}

impl From<LayoutArg> for Layout {
    fn from(layout: LayoutArg) -> Self {
        match layout {
            LayoutArg::Wide => Layout::Wide,
            LayoutArg::Long => Layout::Long,
            LayoutArg::Funnel => Layout::Funnel,
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    layout: LayoutArg,
    /// Semicolons, decimal commas and a byte-order mark, for Dutch Excel.
    #[arg(long)]
    excel: bool,
    /// Add the parents' and professionals' free-text comments (wide layout).
    #[arg(long)]
    include_comments: bool,
    /// First day included, YYYY-MM-DD (Europe/Amsterdam, by chat end time).
    #[arg(long)]
    from: Option<String>,
    /// Last day included, YYYY-MM-DD.
    #[arg(long)]
    to: Option<String>,
    /// Only chats of this organization, as the platform labels it.
    #[arg(long)]
    organization: Option<String>,
    /// Only chats on this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only chats about a child in this age group, e.g. 0-5.
    #[arg(long)]
    child_age_group: Option<String>,
    /// Write the data here instead of to standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write the codebook (CSV) and the SPSS syntax (.sps) into this directory.
    #[arg(long, value_name = "DIR")]
    codebook: Option<PathBuf>,
    /// Ask this running service (its admin API) instead of reading the store.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

/// Runs `alliance export`.
pub async fn run(config_file: Option<&Path>, arguments: ExportArgs) -> Result<(), CliError> {
    let settings = RawSettings::load(config_file)?.validate()?;
    let filter = ReportFilter::parse(
        arguments.from.as_deref(),
        arguments.to.as_deref(),
        arguments.organization.clone(),
        arguments.topic.clone(),
        arguments.child_age_group.clone(),
    )
    .map_err(|problem| CliError::Failed(format!("invalid filter: {problem}")))?;
    let layout = Layout::from(arguments.layout);
    let options = ExportOptions {
        layout,
        excel: arguments.excel,
        include_comments: arguments.include_comments,
        min_cell_size: u64::from(settings.min_cell_size),
    };

    let data = match &arguments.server {
        Some(server) => fetch_export(&settings, server, &filter, &options).await?,
        None => local_export(&settings, &filter, &options)?,
    };
    match &arguments.output {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|error| format!("cannot create the directory {}: {error}", parent.display()))?;
            }
            std::fs::write(path, &data)
                .map_err(|error| format!("cannot write the export to {}: {error}", path.display()))?
        }
        None => std::io::stdout()
            .write_all(&data)
            .map_err(|error| format!("cannot write the export to standard output: {error}"))?,
    }

    if let Some(directory) = &arguments.codebook {
        let data_name = arguments
            .output
            .as_ref()
            .and_then(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| export::file_name(layout, options.excel));
        write_codebook(directory, layout, &options, &data_name)?;
    }
    Ok(())
}

fn local_export(settings: &Settings, filter: &ReportFilter, options: &ExportOptions) -> Result<Vec<u8>, CliError> {
    let store = Store::open(&settings.data_dir, settings.cache_bytes).map_err(|error| {
        format!(
            "cannot open the store in {} ({error}); if a service is running on it, \
             use --server URL to ask the service instead",
            settings.data_dir.display()
        )
    })?;
    let mut data = Vec::new();
    let rows =
        export::write(&store, filter, startup::now_millis(), options, &mut data).map_err(|error| match error {
            ExportError::Suppressed { .. } => CliError::Failed(error.to_string()),
            other => CliError::Failed(format!("the export failed: {other}")),
        })?;
    tracing::info!(
        target: "alliance::audit",
        admin = "command line",
        at = %time_text(startup::now_millis()),
        layout = %options.layout,
        excel = options.excel,
        include_comments = options.include_comments,
        filter = %serde_json::to_string(filter).unwrap_or_default(),
        rows,
        "export written from the store"
    );
    Ok(data)
}

async fn fetch_export(
    settings: &Settings,
    server: &str,
    filter: &ReportFilter,
    options: &ExportOptions,
) -> Result<Vec<u8>, CliError> {
    let token = settings
        .admin_token
        .as_ref()
        .ok_or_else(|| CliError::Failed("set ALLIANCE_ADMIN_TOKEN to ask a running service for an export (a service that generated its own secrets wrote the admin token to dev-secrets.toml in its data directory)".into()))?;
    let mut url = reqwest::Url::parse(server)
        .map_err(|error| format!("--server {server:?} is not a URL ({error})"))?
        .join("api/admin/export")
        .map_err(|error| format!("--server {server:?} cannot be joined with the export path ({error})"))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("layout", options.layout.as_str());
        if options.excel {
            query.append_pair("excel", "true");
        }
        if options.include_comments {
            query.append_pair("include_comments", "true");
        }
        let dates = [("from", filter.from), ("to", filter.to)];
        for (name, date) in dates {
            if let Some(date) = date {
                query.append_pair(name, &date.to_string());
            }
        }
        let labels = [
            ("organization", &filter.organization),
            ("topic", &filter.topic),
            ("child_age_group", &filter.child_age_group),
        ];
        for (name, value) in labels {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|error| format!("cannot reach {server}: {}", crate::cli::describe_http_error(&error)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|error| {
        format!(
            "reading the export from {server} failed: {}; the connection may have closed, so run the export again",
            crate::cli::describe_http_error(&error)
        )
    })?;
    if !status.is_success() {
        return Err(CliError::Failed(format!(
            "{server} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(body.to_vec())
}

fn write_codebook(directory: &Path, layout: Layout, options: &ExportOptions, data_name: &str) -> Result<(), CliError> {
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("cannot create the codebook directory {}: {error}", directory.display()))?;
    let codebook_path = directory.join(format!("alliance-{layout}-codebook.csv"));
    std::fs::write(&codebook_path, export::codebook(layout, options))
        .map_err(|error| format!("cannot write {}: {error}", codebook_path.display()))?;
    let syntax_path = directory.join(format!("alliance-{layout}.sps"));
    std::fs::write(&syntax_path, export::spss_syntax(layout, options, data_name))
        .map_err(|error| format!("cannot write {}: {error}", syntax_path.display()))?;
    eprintln!(
        "Wrote the codebook {} and the SPSS syntax {}",
        codebook_path.display(),
        syntax_path.display()
    );
    Ok(())
}
