//! `--shard auto`: this task's shard from the scheduler's environment.
//!
//! | scheduler | index | count |
//! |---|---|---|
//! | Kubernetes Indexed Job | `JOB_COMPLETION_INDEX` | `--shard-count` (Kubernetes exports none) |
//! | Slurm job array | (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`) / `SLURM_ARRAY_TASK_STEP` | `SLURM_ARRAY_TASK_COUNT` |
//! | AWS Batch array job | `AWS_BATCH_JOB_ARRAY_INDEX` | `AWS_BATCH_JOB_ARRAY_SIZE`, else `--shard-count` |
//!
//! Looked for in that order. A Slurm array must be a range with an optional step
//! (`--array=0-7`, `--array=1-15:2`, `%` throttles allowed), so that task ids map onto
//! positions `0..count`; a list such as `--array=1,4,9` is refused when its ids do not.

use super::plan::Shard;

/// Reads the shard from the environment (`get` looks a variable up); `count` is
/// `--shard-count`, which must agree with the scheduler's count where it has one.
pub fn from_env(
    count: Option<u32>,
    get: impl Fn(&str) -> Option<String>,
) -> Result<(Shard, &'static str), String> {
    let num = |name: &str| -> Result<Option<u64>, String> {
        match get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name}={v:?} is not a number")),
        }
    };
    let small = |n: u64, what: &str| -> Result<u32, String> {
        u32::try_from(n).map_err(|_| format!("{what} {n} is too large"))
    };
    let agree = |from_env: u32, name: &str| -> Result<u32, String> {
        match count {
            Some(c) if c != from_env => Err(format!(
                "--shard-count {c} disagrees with {name}={from_env}"
            )),
            _ => Ok(from_env),
        }
    };
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let count = count.ok_or(
            "JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job): give --shard-count, the Job's completions",
        )?;
        let shard = Shard::new(small(index, "JOB_COMPLETION_INDEX")?, count)?;
        return Ok((shard, "JOB_COMPLETION_INDEX"));
    }
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let n = num("SLURM_ARRAY_TASK_COUNT")?
            .ok_or("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
        let n = agree(
            small(n, "SLURM_ARRAY_TASK_COUNT")?,
            "SLURM_ARRAY_TASK_COUNT",
        )?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let offset = id.checked_sub(min).ok_or_else(|| {
            format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
        })?;
        if offset % step != 0 {
            return Err(format!(
                "SLURM_ARRAY_TASK_ID {id} is not on the array's range {min}-…:{step}: \
                 submit the array as a range (--array=0-{})",
                n.saturating_sub(1)
            ));
        }
        let position = small(offset / step, "Slurm array position")?;
        let shard = Shard::new(position, n).map_err(|e| {
            format!("SLURM_ARRAY_TASK_ID {id} (min {min}, step {step}): {e}; submit the array as a range")
        })?;
        return Ok((shard, "SLURM_ARRAY_TASK_ID"));
    }
    if let Some(index) = num("AWS_BATCH_JOB_ARRAY_INDEX")? {
        let n = match num("AWS_BATCH_JOB_ARRAY_SIZE")? {
            Some(n) => agree(small(n, "AWS_BATCH_JOB_ARRAY_SIZE")?, "AWS_BATCH_JOB_ARRAY_SIZE")?,
            None => count.ok_or(
                "AWS_BATCH_JOB_ARRAY_INDEX is set: give --shard-count (or AWS_BATCH_JOB_ARRAY_SIZE), the array size",
            )?,
        };
        let shard = Shard::new(small(index, "AWS_BATCH_JOB_ARRAY_INDEX")?, n)?;
        return Ok((shard, "AWS_BATCH_JOB_ARRAY_INDEX"));
    }
    Err(
        "--shard auto: none of JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, \
         AWS_BATCH_JOB_ARRAY_INDEX is set (not running as an array task?)"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn shard(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn kubernetes_needs_the_count_from_the_flag() {
        let vars = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(
            from_env(Some(4), env(&vars)),
            Ok((shard(3, 4), "JOB_COMPLETION_INDEX"))
        );
        assert!(
            from_env(None, env(&vars))
                .unwrap_err()
                .contains("--shard-count")
        );
        assert!(
            from_env(Some(3), env(&vars))
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn slurm_positions_come_from_id_min_and_step() {
        let plain = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ];
        assert_eq!(from_env(None, env(&plain)).unwrap().0, shard(2, 4));
        assert_eq!(from_env(Some(4), env(&plain)).unwrap().0, shard(2, 4));
        assert!(
            from_env(Some(5), env(&plain))
                .unwrap_err()
                .contains("disagrees")
        );
        // --array=1-4: ids 1..=4.
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(from_env(None, env(&one_based)).unwrap().0, shard(3, 4));
        // --array=10-16:3: ids 10, 13, 16.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "13"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "3"),
        ];
        assert_eq!(from_env(None, env(&stepped)).unwrap().0, shard(1, 3));
        // --array=1,4,9 (a list: step unset) cannot be mapped.
        let list = [
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert!(from_env(None, env(&list)).unwrap_err().contains("range"));
        let off = [
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "3"),
        ];
        assert!(from_env(None, env(&off)).unwrap_err().contains("range"));
        let no_count = [("SLURM_ARRAY_TASK_ID", "1")];
        assert!(from_env(None, env(&no_count)).is_err());
    }

    #[test]
    fn aws_batch_takes_the_size_or_the_flag() {
        let sized = [
            ("AWS_BATCH_JOB_ARRAY_INDEX", "0"),
            ("AWS_BATCH_JOB_ARRAY_SIZE", "8"),
        ];
        assert_eq!(from_env(None, env(&sized)).unwrap().0, shard(0, 8));
        let bare = [("AWS_BATCH_JOB_ARRAY_INDEX", "5")];
        assert_eq!(from_env(Some(6), env(&bare)).unwrap().0, shard(5, 6));
        assert!(from_env(None, env(&bare)).is_err());
    }

    #[test]
    fn nothing_set_or_garbage_is_an_error() {
        assert!(from_env(Some(2), env(&[])).unwrap_err().contains("none of"));
        let bad = [("JOB_COMPLETION_INDEX", "x")];
        assert!(
            from_env(Some(2), env(&bad))
                .unwrap_err()
                .contains("not a number")
        );
        let first = [
            ("JOB_COMPLETION_INDEX", "1"),
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        assert_eq!(
            from_env(Some(2), env(&first)).unwrap().1,
            "JOB_COMPLETION_INDEX"
        );
    }
}
