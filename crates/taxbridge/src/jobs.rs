//! `taxbridge jobs watch JOB_ID`: a live view of one import, read from the database, until
//! the job is final. One bar of artifacts (succeeded and failed of all), with the works, the
//! bytes stored and the rate; on a terminal it redraws in place, elsewhere it prints a line a
//! second.

use crate::settings::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    ids::JobId,
    imports::{Job, JobProgress, JobStatus, JobWatch},
};

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Show an import's progress live until it is completed, failed or cancelled.
    Watch {
        /// The connection job's id (`job_…`).
        job_id: String,
        /// Seconds between reads of the database.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

fn describe(job: &Job, p: &JobProgress, rate: f64) -> String {
    format!(
        "{} · {} works · {} succeeded, {} failed, {} remaining{} · {} · {}/s",
        job.status.as_str(),
        p.works,
        p.succeeded,
        p.failed,
        p.initial,
        if p.terminated > 0 {
            format!(", {} terminated", p.terminated)
        } else {
            String::new()
        },
        indicatif::HumanBytes(p.bytes),
        indicatif::HumanBytes(rate.max(0.0) as u64),
    )
}

pub async fn run(cmd: JobsCommand, settings: &Settings) -> anyhow::Result<()> {
    let JobsCommand::Watch { job_id, interval } = cmd;
    let store = JobWatch::new(crate::admin::open_store(settings).await?);
    let id = JobId::from_string(job_id.clone());
    let Some(mut job) = store.job(&id).await? else {
        anyhow::bail!("No connection job has the id `{job_id}`.");
    };
    let bar = ProgressBar::new(0);
    if !console_is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} artifacts  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let interval = Duration::from_secs_f64(interval.clamp(0.1, 60.0));
    let (mut last_bytes, mut last_at) = (0u64, Instant::now());
    let mut last_line = Instant::now() - Duration::from_secs(10);
    loop {
        let progress = store.progress(&id).await?;
        let elapsed = last_at.elapsed().as_secs_f64().max(0.001);
        let rate = progress.bytes.saturating_sub(last_bytes) as f64 / elapsed;
        (last_bytes, last_at) = (progress.bytes, Instant::now());
        bar.set_length(progress.artifacts);
        bar.set_position(progress.succeeded + progress.failed + progress.terminated);
        let text = describe(&job, &progress, rate);
        bar.set_message(text.clone());
        if bar.is_hidden() && last_line.elapsed() >= Duration::from_secs(1) {
            println!(
                "{}/{} artifacts  {text}",
                bar.position(),
                progress.artifacts
            );
            last_line = Instant::now();
        }
        if matches!(
            job.status,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        ) {
            bar.finish();
            if bar.is_hidden() {
                println!(
                    "{}/{} artifacts  {text}",
                    bar.position(),
                    progress.artifacts
                );
            }
            return Ok(());
        }
        tokio::time::sleep(interval).await;
        job = store
            .job(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("The job `{job_id}` is gone."))?;
    }
}

fn console_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
