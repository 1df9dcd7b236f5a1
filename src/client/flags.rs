//! Value parsers for ferry's flags: seconds and counts, with the words
//! clap prints when a value is refused (it names the option itself).

use std::time::Duration;

pub fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{what} must be a non-negative number of seconds"))
}

/// A number of seconds, 0 or more (clap names the option in the error).
pub fn secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1e12).contains(&v) => Ok(v),
        _ => Err("give a number of seconds, 0 or more (1, 0.5)".into()),
    }
}

/// A number of seconds, more than 0.
pub fn positive_secs(s: &str) -> Result<f64, String> {
    match secs(s) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err("give a number of seconds greater than 0 (1, 0.5)".into()),
    }
}

/// A whole number, 1 or more.
pub fn count<T: std::str::FromStr + TryFrom<u8> + PartialOrd>(s: &str) -> Result<T, String> {
    let one = T::try_from(1u8).map_err(|_| String::new())?;
    match s.trim().parse::<T>() {
        Ok(v) if v >= one => Ok(v),
        _ => Err("give a whole number, 1 or more".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_counts() {
        assert_eq!(secs("0.5"), Ok(0.5));
        assert!(secs("-1").is_err() && secs("x").is_err() && secs("1e13").is_err());
        assert!(positive_secs("0").is_err());
        assert_eq!(positive_secs(" 2 "), Ok(2.0));
        assert_eq!(count::<u32>("3"), Ok(3));
        assert!(count::<u32>("0").is_err() && count::<u8>("300").is_err());
        assert_eq!(seconds(1.5, "-w"), Ok(Duration::from_millis(1500)));
    }
}
