//! Merging partials: check that they are one run's, then finish them into the report a
//! single run would have written.
//!
//! The checks: every partial has the same [`PlanKey`] (program version, rules, options,
//! paths, inputs, shard count); each stage holds every shard exactly once; together the
//! segments read every input exactly once (pieces of a file meeting end to start). Then
//! the segments are merged in input order — pieces of a file by `Partial::append`, which
//! shifts their lines and offsets by what precedes them, whole inputs by
//! `Partial::absorb_file` — and the engine's own `plan_context` and `finish` do the rest,
//! so duplicates are dropped and bypass periods are built across shard boundaries exactly
//! as in one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::allow::Allowlist;
use crate::analysis::context::Activity;
use crate::config::Config;
use crate::enrich::Enrichment;
use crate::error::{InputError, Warning};
use crate::findings::{Harvest, Merge, Partial};
use crate::report::{Names, Report, RunStats};
use crate::rule::Rule;
use crate::stages::{self, Finish};

use super::partial::{
    self, CONTEXT_FORMAT, ContextPlanFile, PARTIAL_FORMAT, PartialFile, PassRecord, PlanKey,
    Segment, Stage, VERSION, WatchSpec,
};

/// Why partials cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file is not a usable partial.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The partials do not make one run.
    #[error("{0}")]
    Plan(String),
    /// The run cannot start.
    #[error(transparent)]
    Run(#[from] crate::error::Error),
}

/// A partial and the file it came from.
pub struct Loaded {
    /// The file.
    pub path: String,
    /// Its contents.
    pub file: PartialFile,
}

/// Reads partials; a directory stands for every file in it (sorted; hidden files and
/// context plans skipped).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Loaded>, MergeError> {
    let mut files: Vec<PathBuf> = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| MergeError::File {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.is_file())
                .filter(|f| {
                    !f.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .filter(|f| partial::read::<serde::de::IgnoredAny>(f, CONTEXT_FORMAT).is_err())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|f| {
            let path = f.display().to_string();
            partial::read::<PartialFile>(&f, PARTIAL_FORMAT)
                .map(|file| Loaded {
                    path: path.clone(),
                    file,
                })
                .map_err(|message| MergeError::File { path, message })
        })
        .collect()
}

/// Reads a context plan.
pub fn load_context_plan(path: &Path) -> Result<ContextPlanFile, MergeError> {
    partial::read(path, CONTEXT_FORMAT).map_err(|message| MergeError::File {
        path: path.display().to_string(),
        message,
    })
}

/// The partials of one run, checked, by stage and shard.
struct Checked {
    key: PlanKey,
    scan: Vec<Loaded>,
    context: Vec<Loaded>,
}

fn check(files: Vec<Loaded>) -> Result<Checked, MergeError> {
    let reference = files
        .iter()
        .find(|l| l.file.stage == Stage::Scan)
        .ok_or_else(|| {
            MergeError::Plan(
                "no first-stage partial given (written by `ualhunt hunt --shard K/N --partial FILE`)"
                    .to_string(),
            )
        })?;
    let key = reference.file.plan.clone();
    for l in &files {
        if let Some(why) = key.difference(&l.file.plan) {
            return Err(MergeError::File {
                path: l.path.clone(),
                message: format!("belongs to another run than {} ({why})", reference.path),
            });
        }
        let f = &l.file;
        let consistent = match f.stage {
            Stage::Scan => f.scan.is_some() && f.context.is_none(),
            Stage::Context => f.scan.is_none() && f.context.is_some(),
        };
        if !consistent || f.shard >= key.shards {
            return Err(MergeError::File {
                path: l.path.clone(),
                message: "damaged partial (stage and contents disagree, or shard out of range)"
                    .to_string(),
            });
        }
    }
    let mut scan: BTreeMap<u32, Loaded> = BTreeMap::new();
    let mut context: BTreeMap<u32, Loaded> = BTreeMap::new();
    for l in files {
        let stage = l.file.stage;
        let seen = match stage {
            Stage::Scan => &mut scan,
            Stage::Context => &mut context,
        };
        let shard = l.file.shard;
        if let Some(first) = seen.get(&shard) {
            return Err(MergeError::Plan(format!(
                "shard {shard}/{} of the {} stage is given twice: {} and {}",
                key.shards,
                stage_name(stage),
                first.path,
                l.path
            )));
        }
        seen.insert(shard, l);
    }
    missing(&scan, key.shards, Stage::Scan)?;
    if !context.is_empty() {
        missing(&context, key.shards, Stage::Context)?;
    }
    Ok(Checked {
        key,
        scan: scan.into_values().collect(),
        context: context.into_values().collect(),
    })
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Scan => "first (scan)",
        Stage::Context => "second (context)",
    }
}

fn missing(present: &BTreeMap<u32, Loaded>, count: u32, stage: Stage) -> Result<(), MergeError> {
    let absent: Vec<String> = (0..count)
        .filter(|k| !present.contains_key(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(MergeError::Plan(format!(
            "the {} stage is missing shard{} {}",
            stage_name(stage),
            if absent.len() == 1 { "" } else { "s" },
            absent.join(", ")
        )))
    }
}

/// The configuration a run with this key had (the allowlist judged on `today`).
pub fn config_of(key: &PlanKey, today: chrono::NaiveDate) -> Result<Config, MergeError> {
    let rules = key
        .rules
        .iter()
        .map(|m| Rule::compile(m.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MergeError::Plan(format!("the partials' rules do not compile: {e}")))?;
    let o = &key.options;
    let mut config = Config::new(key.paths.iter().map(PathBuf::from).collect());
    config.rules = rules;
    config.not_run = key.not_run.clone();
    config.prefilter = o.prefilter;
    config.max_line = usize::try_from(o.max_line).unwrap_or(usize::MAX);
    config.since = o.since;
    config.until = o.until;
    config.keep_duplicates = o.keep_duplicates;
    config.context = o.context;
    config.context_window = chrono::Duration::seconds(o.context_window);
    config.context_horizon = chrono::Duration::seconds(o.context_horizon);
    config.allowlist = Allowlist::from_entries(o.allow.clone(), today);
    config.enrichment = std::sync::Arc::new(Enrichment::recorded(o.geoip.clone()));
    Ok(config)
}

/// Segments of every shard merged in input order.
struct Folded<S> {
    partial: Partial<S>,
    bytes: u64,
    names: Vec<String>,
    members: Vec<Option<String>>,
    errors: Vec<InputError>,
    warnings: Vec<Warning>,
}

/// A file being put together from its pieces.
struct Open<S> {
    input: u64,
    partial: Partial<S>,
    /// The nominal start the next piece must have.
    next_start: u64,
    /// Where this file's errors begin in the merged list.
    errors_from: usize,
    /// Whether its pieces were read where the index points, positions the file's own.
    absolute: bool,
}

fn fold<S: Merge>(
    mut segments: Vec<(String, Segment<S>)>,
    inputs: u64,
) -> Result<Folded<S>, MergeError> {
    segments.sort_by_key(|(_, s)| (s.first, s.piece.map_or(0, |p| p.start)));
    let mut out = Folded {
        partial: Partial::default(),
        bytes: 0,
        names: Vec::new(),
        members: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let misplaced = |path: &str, input: u64| {
        MergeError::Plan(format!(
            "{path}: input {input} is not where the plan puts it (read twice, or a piece before it is missing)"
        ))
    };
    let mut open: Option<Open<S>> = None;
    let mut next: u64 = 0;
    for (path, s) in segments {
        let first = u64::from(s.first);
        out.bytes += s.bytes;
        out.warnings
            .extend(s.warnings.into_iter().map(Warning::from));
        let Some(piece) = s.piece else {
            if open.is_some() || first != next || s.names.is_empty() {
                return Err(misplaced(&path, first));
            }
            next += s.names.len() as u64;
            out.names.extend(s.names);
            out.members.extend(s.members);
            out.partial.absorb_file(s.partial);
            out.errors
                .extend(s.errors.into_iter().map(InputError::from));
            continue;
        };
        let mut file = if piece.start == 0 {
            if open.is_some() || first != next {
                return Err(misplaced(&path, first));
            }
            out.names.extend(s.names);
            out.members.extend(s.members);
            Open {
                input: first,
                partial: s.partial,
                next_start: 0,
                errors_from: out.errors.len(),
                absolute: s.absolute,
            }
        } else {
            match open.take() {
                // Every piece of a file is read the same way (the index is the whole
                // file's): a mix would shift positions that are already the file's.
                Some(o) if o.input == first && o.absolute != s.absolute => {
                    return Err(MergeError::Plan(format!(
                        "{path}: input {first} was read in pieces of two kinds by the context stage (changed under the run?)"
                    )));
                }
                Some(mut o) if o.input == first && o.next_start == piece.start => {
                    if s.absolute {
                        // Read where the index points: positions are the file's own.
                        o.partial.absorb_file(s.partial);
                    } else {
                        // Positions in this piece shift by the lines and bytes before it.
                        o.partial.append(s.partial);
                    }
                    o
                }
                _ => return Err(misplaced(&path, first)),
            }
        };
        // Every piece of a file meets the same failure to open it: report it once.
        for e in s.errors.into_iter().map(InputError::from) {
            if !out.errors[file.errors_from..].contains(&e) {
                out.errors.push(e);
            }
        }
        match piece.end {
            Some(end) => {
                file.next_start = end;
                open = Some(file);
            }
            None => {
                out.partial.absorb_file(file.partial);
                next += 1;
            }
        }
    }
    if open.is_some() || next != inputs {
        return Err(MergeError::Plan(format!(
            "the partials read {next} of {inputs} inputs: a piece or an input is missing"
        )));
    }
    Ok(out)
}

/// The first stage merged, with the configuration and the context plan.
struct FirstStage {
    config: Config,
    folded: Folded<Harvest>,
    errors: Vec<InputError>,
    warnings: Vec<Warning>,
    plan: stages::ContextPlan,
}

fn first_stage(checked: &mut Checked, today: chrono::NaiveDate) -> Result<FirstStage, MergeError> {
    let config = config_of(&checked.key, today)?;
    let mut segments = Vec::new();
    for l in &mut checked.scan {
        if let Some(scan) = l.file.scan.as_mut() {
            let taken = std::mem::take(&mut scan.segments);
            segments.extend(taken.into_iter().map(|s| (l.path.clone(), s)));
        }
    }
    let mut folded = fold(segments, checked.key.inputs)?;
    // The discovery errors and empty directories are the whole run's, the same in every
    // shard (the plan key's digest covers the errors).
    let shard0 = checked.scan[0].file.scan.as_ref();
    let mut errors: Vec<InputError> = shard0
        .map(|s| {
            s.discover_errors
                .iter()
                .cloned()
                .map(InputError::from)
                .collect()
        })
        .unwrap_or_default();
    let explained = !errors.is_empty() || !folded.errors.is_empty() || !folded.warnings.is_empty();
    errors.append(&mut folded.errors);
    let mut warnings = std::mem::take(&mut folded.warnings);
    let dirs: Vec<Warning> = shard0
        .map(|s| {
            s.empty_directories
                .iter()
                .cloned()
                .map(Warning::from)
                .collect()
        })
        .unwrap_or_default();
    let explained = explained || !dirs.is_empty();
    warnings.extend(dirs);
    warnings.extend(crate::warnings::nothing_read(
        &config.paths,
        checked.key.inputs as usize,
        folded.bytes,
        explained,
    ));
    let findings = std::mem::take(&mut folded.partial.sink.findings);
    let plan = stages::plan_context(
        findings,
        folded.partial.coverage.first,
        &|i| {
            folded
                .names
                .get(i)
                .cloned()
                .unwrap_or_else(|| "?".to_string())
        },
        &config,
    );
    Ok(FirstStage {
        config,
        folded,
        errors,
        warnings,
        plan,
    })
}

/// Makes the context plan from every first-stage partial.
pub fn context_plan(
    files: Vec<Loaded>,
    today: chrono::NaiveDate,
) -> Result<ContextPlanFile, MergeError> {
    let mut checked = check(files)?;
    if let Some(l) = checked.context.first() {
        return Err(MergeError::File {
            path: l.path.clone(),
            message: "a second-stage (context) partial: the context plan is made from the first-stage partials only".to_string(),
        });
    }
    let first = first_stage(&mut checked, today)?;
    let index = &first.folded.partial;
    let inputs = usize::try_from(checked.key.inputs).unwrap_or(usize::MAX);
    // What each context pass reads, span by span: each shard keeps those inside its
    // pieces.
    let reads = first
        .plan
        .rules
        .iter()
        .filter_map(|(r, w)| {
            let w = w.as_ref()?;
            let each = crate::index::spans_each(&index.index, &index.seeks, inputs, &w.times());
            Some((*r, each))
        })
        .collect();
    Ok(ContextPlanFile {
        format: CONTEXT_FORMAT.to_string(),
        version: VERSION,
        plan_digest: checked.key.digest(),
        plan: checked.key,
        rules: first
            .plan
            .rules
            .iter()
            .map(|(r, w)| (*r, w.as_ref().map(WatchSpec::new)))
            .collect(),
        reads,
    })
}

const STALE: &str = "ran with another context plan than these first-stage partials make (a stale --context-from file?)";

/// Merges the partials of a run (both stages' when its findings need the context pass)
/// into its report.
pub fn merge(files: Vec<Loaded>, today: chrono::NaiveDate) -> Result<Report, MergeError> {
    let mut checked = check(files)?;
    let first = first_stage(&mut checked, today)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(crate::error::Error::from)?;
    let planned: Vec<(u16, String)> = first
        .plan
        .rules
        .iter()
        .filter_map(|(r, w)| w.as_ref().map(|w| (*r, WatchSpec::new(w).digest())))
        .collect();
    if !planned.is_empty() && checked.context.is_empty() {
        return Err(MergeError::Plan(
            "these findings need the context pass: make the context plan (`ualhunt merge --context-plan FILE` over the first-stage partials), run the second stage (`ualhunt hunt --shard K/N --context-from FILE --partial FILE`) and merge both stages' partials"
                .to_string(),
        ));
    }
    // Every context partial ran exactly the planned passes, with the planned watches.
    for l in &checked.context {
        let parts = l.file.context.as_deref().unwrap_or_default();
        let ran: Vec<(u16, &str)> = parts.iter().map(|p| (p.rule, p.watch.as_str())).collect();
        let want: Vec<(u16, &str)> = planned.iter().map(|(r, d)| (*r, d.as_str())).collect();
        if ran != want {
            return Err(MergeError::File {
                path: l.path.clone(),
                message: STALE.to_string(),
            });
        }
    }
    let mut activities: Vec<Option<Activity>> = Vec::new();
    let mut context_stats = Vec::new();
    let mut later = Vec::new();
    let mut k = 0;
    for &(rule, ref watch) in &first.plan.rules {
        if watch.is_none() {
            activities.push(None);
            continue;
        }
        let mut segments = Vec::new();
        // Each context partial records its passes in plan order, one per watching rule.
        let mut records = Vec::new();
        for l in &mut checked.context {
            if let Some(part) = l.file.context.as_mut().and_then(|p| p.get_mut(k)) {
                let taken = std::mem::take(&mut part.segments);
                segments.extend(taken.into_iter().map(|s| (l.path.clone(), s)));
            }
            records.extend(l.file.stats.passes.get(k));
        }
        k += 1;
        let folded = fold(segments, checked.key.inputs)?;
        let mut pass = partial::merge_stats(&records);
        pass.counts = folded.partial.counts;
        context_stats.push(crate::report::ContextStats {
            rule: first.config.rules[usize::from(rule)]
                .meta
                .shown_name()
                .into_owned(),
            pass,
            attributed: records.iter().map(|r| r.attributed).sum(),
        });
        later.push((folded.errors, folded.warnings));
        activities.push(Some(folded.partial.sink));
    }
    let context_ran = activities.iter().any(Option::is_some);
    let records = |ls: &[Loaded]| -> Vec<PassRecord> {
        ls.iter()
            .flat_map(|l| l.file.stats.passes.clone())
            .collect()
    };
    let scan_records = records(&checked.scan);
    let mut scan = partial::merge_stats(&scan_records.iter().collect::<Vec<_>>());
    scan.counts = first.folded.partial.counts;
    let longest = |ls: &[Loaded]| {
        ls.iter()
            .map(|l| Duration::try_from_secs_f64(l.file.stats.wall).unwrap_or_default())
            .max()
            .unwrap_or_default()
    };
    let matcher = stages::run_matcher(&first.config);
    let stats = RunStats {
        wall: longest(&checked.scan) + longest(&checked.context),
        phases: Vec::new(),
        threads: checked
            .scan
            .iter()
            .map(|l| l.file.stats.threads)
            .max()
            .unwrap_or(0),
        chunk_size: checked.scan[0].file.stats.chunk_size,
        rules: stages::rule_stats(
            &matcher,
            &first.folded.partial.evaluated,
            &first.plan.matched,
        ),
        routed_literals: matcher.router().map(|r| r.literals()),
        // A shard evaluates every rule on every record: no rule waits for a trigger.
        triggers: None,
        // The merge's context pass reads the shards' inputs afresh: nothing is kept.
        cache: None,
        scan,
        watched: context_ran.then(|| {
            crate::report::Watched::of(first.plan.rules.iter().filter_map(|(_, w)| w.as_ref()))
        }),
        context: context_stats,
    };
    let FirstStage {
        config,
        folded,
        mut errors,
        mut warnings,
        plan,
    } = first;
    for (later_errors, later_warnings) in later {
        crate::error::add_later(
            &mut errors,
            &mut warnings,
            crate::error::Later::Context,
            later_errors,
            later_warnings,
        );
    }
    Ok(stages::finish(
        Finish {
            names: Names::listed(folded.names, folded.members),
            errors,
            warnings,
            first: folded.partial,
            bytes: folded.bytes,
            plan,
            activities,
            stats,
        },
        &config,
        &pool,
    ))
}
