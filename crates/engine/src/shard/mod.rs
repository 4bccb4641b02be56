//! Sharded runs: one hunt split over the tasks of a batch scheduler (Slurm arrays,
//! Kubernetes Indexed Jobs, AWS Batch array jobs), merged into exactly the report one
//! run would have written.
//!
//! Place in the flow: around `engine`, whose stages it runs on a share of the inputs.
//! [`Plan`] cuts the sorted input list into N shares balanced by size (a big plain
//! JSON-lines file is cut into line-aligned byte ranges; everything read sequentially
//! stays whole). A shard writes a [`PartialFile`]: its segments' partial states
//! (`findings::Partial`, which merge associatively with line and byte shifts), errors,
//! warnings and statistics, with the [`PlanKey`] every shard of the run must share.
//! `merge` checks the partials form one plan and finishes them with the engine's own
//! last stage.
//!
//! The context pass needs the names that *all* first-pass findings make watched, which
//! no shard knows alone; so a sharded run has two stages: the first pass on every shard,
//! a context plan made from all first-stage partials ([`merge::context_plan`]), the
//! context pass on every shard with that plan (a no-op when nothing needs context), then
//! the merge of both stages' partials. Nothing here prints.

pub mod env;
pub mod merge;
pub mod partial;
pub mod plan;

use std::time::Instant;

pub use self::partial::{ContextPlanFile, PartialFile, PlanKey};
pub use self::plan::{Plan, Shard};
pub use crate::scan::{Piece, Unit};

use crate::analysis::context::Activity;
use crate::config::Config;
use crate::error::{Error, Later};
use crate::findings::Harvest;
use crate::scan::Pass;
use crate::stages::{self, Found};
use ualhunt_input::Input;

use self::partial::{
    ContextPart, Options, PARTIAL_FORMAT, PassRecord, ScanPart, ShardStats, Stage, VERSION,
    WarningRecord,
};

/// Why a shard cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The run cannot start.
    #[error(transparent)]
    Run(#[from] Error),
    /// Standard input cannot be shared between tasks.
    #[error("standard input (-) cannot be sharded: give files or directories")]
    Stdin,
    /// The context plan is for another run.
    #[error("the context plan {path} is for another run: {why}")]
    ForeignContext {
        /// The context plan.
        path: String,
        /// What differs.
        why: String,
    },
}

/// The options of `config` that change what a run finds or reports.
pub fn options(config: &Config) -> Options {
    Options {
        prefilter: config.prefilter,
        max_line: config.max_line as u64,
        since: config.since,
        until: config.until,
        keep_duplicates: config.keep_duplicates,
        context: config.context,
        context_window: config.context_window.num_seconds(),
        context_horizon: config.context_horizon.num_seconds(),
        allow: config.allowlist.entries.clone(),
        geoip: config.enrichment.used().to_vec(),
    }
}

/// The key every partial of this run carries.
pub fn plan_key(config: &Config, found: &Found, plan: &Plan) -> PlanKey {
    PlanKey {
        ualhunt: env!("CARGO_PKG_VERSION").to_string(),
        shards: plan.count,
        paths: config
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        inputs: found.inputs.len() as u64,
        input_bytes: plan.total,
        inputs_digest: plan.digest.clone(),
        rules: config.rules.iter().map(|r| r.meta.clone()).collect(),
        not_run: config.not_run.clone(),
        options: options(config),
    }
}

/// What a shard reads, for `--list-shard`: each input with its share.
pub struct Listing {
    /// The plan key.
    pub key: PlanKey,
    /// (name, bytes on disk, piece) of each unit.
    pub units: Vec<(String, u64, Option<Piece>)>,
}

/// Plans the run and lists what `shard` would read, without reading it (only the first
/// bytes of plain files, to recognise their layout).
pub fn list(config: &Config, shard: Shard) -> Result<Listing, ShardError> {
    let found = stages::discover(config);
    if found.inputs.contains(&Input::Stdin) {
        return Err(ShardError::Stdin);
    }
    let plan = Plan::new(&found, shard.count);
    let units = plan
        .units(shard.index)
        .into_iter()
        .map(|u| {
            let i = u.input as usize;
            (found.inputs[i].display(), plan.inputs[i].size, u.piece)
        })
        .collect();
    Ok(Listing {
        key: plan_key(config, &found, &plan),
        units,
    })
}

/// Runs one shard of one stage: the first pass (`context` `None`), or the context pass
/// with a context plan (its path and contents).
pub fn run(
    config: &Config,
    shard: Shard,
    context: Option<(&str, &ContextPlanFile)>,
) -> Result<PartialFile, ShardError> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(Error::from)?;
    let found = stages::discover(config);
    if found.inputs.contains(&Input::Stdin) {
        return Err(ShardError::Stdin);
    }
    let plan = Plan::new(&found, shard.count);
    let key = plan_key(config, &found, &plan);
    let units = plan.units(shard.index);
    let mut passes = Vec::new();
    let (stage, scan, contexts) = match context {
        None => {
            let matcher = stages::run_matcher(config);
            let (mut results, stats) = pool.install(|| {
                crate::scan::scan_units::<Harvest>(
                    &found.inputs,
                    &units,
                    &[],
                    Pass::new(&matcher, &()),
                    config,
                )
            });
            passes.push(PassRecord::new(&stats, 0));
            if !matcher.gated().is_empty() {
                // The rules searched for by their trigger: a shard cannot know the other
                // shards' triggers, so it reads every record of its share again for them
                // (the single run, only the runs around its triggers); the merge replays
                // them as the single run does, with the same line accounting.
                let gated = matcher.gated();
                let again = stages::gated_matcher(config, gated);
                let (second, _) = pool.install(|| {
                    crate::scan::scan_units::<Harvest>(
                        &found.inputs,
                        &units,
                        &[],
                        Pass::new(&again, &()),
                        config,
                    )
                });
                for (unit, more) in results.iter_mut().zip(second) {
                    // What the second read could not read is said, as a single run
                    // says it (`add_later`): only where the first read said nothing.
                    if unit.error.is_none() {
                        unit.error = more.error.map(|e| Later::Triggers.error(e));
                    }
                    if unit.warning.is_none() {
                        unit.warning = more.warning.map(|w| Later::Triggers.warning(w));
                    }
                    let findings = &mut unit.partial.sink.findings;
                    findings.retain(|f| !gated.contains(&f.rule));
                    findings.extend(more.partial.sink.findings);
                    findings.sort_by_key(|f| (f.at, f.rule, f.why));
                }
            }
            let empty = crate::warnings::empty_directories(&config.paths, &found.inputs);
            let scan = ScanPart {
                discover_errors: found.errors.iter().map(Into::into).collect(),
                empty_directories: empty.iter().map(WarningRecord::from).collect(),
                segments: partial::segments(&units, results, &found.inputs),
            };
            (Stage::Scan, Some(scan), None)
        }
        Some((path, plan_file)) => {
            if let Some(why) = plan_file.plan.difference(&key) {
                return Err(ShardError::ForeignContext {
                    path: path.to_string(),
                    why,
                });
            }
            let mut parts = Vec::new();
            for (rule, spec) in &plan_file.rules {
                let Some(spec) = spec else { continue };
                let watch = spec.watch();
                let matcher = stages::context_matcher(config, &watch);
                // Only where the first stage's index points (as an unsharded run reads).
                let within = match plan_file.reads.iter().find(|(r, _)| r == rule) {
                    Some((_, within)) if !config.context_full_read => &within[..],
                    _ => &[][..],
                };
                let (results, stats) = pool.install(|| {
                    crate::scan::scan_units(
                        &found.inputs,
                        &units,
                        within,
                        Pass::<Activity>::new(&matcher, &watch),
                        config,
                    )
                });
                let attributed = results.iter().map(|r| r.partial.sink.records).sum();
                passes.push(PassRecord::new(&stats, attributed));
                parts.push(ContextPart {
                    rule: *rule,
                    watch: spec.digest(),
                    segments: partial::segments(&units, results, &found.inputs),
                });
            }
            (Stage::Context, None, Some(parts))
        }
    };
    Ok(PartialFile {
        format: PARTIAL_FORMAT.to_string(),
        version: VERSION,
        stage,
        plan_digest: key.digest(),
        plan: key,
        shard: shard.index,
        units,
        scan,
        context: contexts,
        stats: ShardStats {
            wall: started.elapsed().as_secs_f64(),
            threads: pool.current_num_threads(),
            chunk_size: config.chunk_size,
            passes,
        },
    })
}
