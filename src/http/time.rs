//! Times as answers show them: RFC 3339 in the configured offset, to the second.
//!
//! Stored times are unix seconds (UTC). A page of groups shows twenty of them, so they are
//! written by hand into a stack buffer, checked against chrono's own formatting by a
//! property test, rather than formatted by chrono into a `String` each.

use chrono::{DateTime, FixedOffset};

use super::json::JsonWriter;

/// A time as the API writes it, e.g. `2021-06-24T18:24:45+08:00` (see the module
/// documentation for why it is written by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTime {
    unix_seconds: i64,
    offset: FixedOffset,
}

/// `YYYY-MM-DDTHH:MM:SS+HH:MM`.
const API_TIME_LEN: usize = 25;

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01: the
/// well-known `civil_from_days` computation (eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl ApiTime {
    pub fn new(unix_seconds: i64, offset: FixedOffset) -> ApiTime {
        ApiTime {
            unix_seconds,
            offset,
        }
    }

    /// The text in `buffer` (ASCII), or `None` for a year outside 0..=9999 (never a stored
    /// time).
    fn write<'b>(&self, buffer: &'b mut [u8; API_TIME_LEN]) -> Option<&'b [u8]> {
        let offset = self.offset.local_minus_utc();
        let local = self.unix_seconds.checked_add(i64::from(offset))?;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let year = u32::try_from(year).ok().filter(|year| *year <= 9999)?;
        let second_of_day = local.rem_euclid(86_400) as u32;
        let offset_minutes = offset.unsigned_abs() / 60;
        let two = |value: u32| [b'0' + (value / 10 % 10) as u8, b'0' + (value % 10) as u8];
        let [y0, y1] = two(year / 100);
        let [y2, y3] = two(year % 100);
        let [mo0, mo1] = two(month);
        let [d0, d1] = two(day);
        let [h0, h1] = two(second_of_day / 3600);
        let [mi0, mi1] = two(second_of_day / 60 % 60);
        let [s0, s1] = two(second_of_day % 60);
        let [oh0, oh1] = two(offset_minutes / 60);
        let [om0, om1] = two(offset_minutes % 60);
        let sign = if offset < 0 { b'-' } else { b'+' };
        *buffer = [
            y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0,
            s1, sign, oh0, oh1, b':', om0, om1,
        ];
        Some(buffer)
    }

    /// The time as a JSON string, straight into `json` (it needs no escaping).
    pub(crate) fn write_json(&self, json: &mut JsonWriter) {
        let mut buffer = [0; API_TIME_LEN];
        match self.write(&mut buffer) {
            Some(text) => {
                json.raw("\"");
                json.bytes(text);
                json.raw("\"");
            }
            None => json.str(&self.to_string()),
        }
    }
}

impl std::fmt::Display for ApiTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buffer = [0; API_TIME_LEN];
        match self
            .write(&mut buffer)
            .and_then(|text| std::str::from_utf8(text).ok())
        {
            Some(text) => f.write_str(text),
            None => f.write_str(
                &DateTime::from_timestamp(self.unix_seconds, 0)
                    .unwrap_or_default()
                    .with_timezone(&self.offset)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            ),
        }
    }
}

impl serde::Serialize for ApiTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0; API_TIME_LEN];
        match self
            .write(&mut buffer)
            .and_then(|text| std::str::from_utf8(text).ok())
        {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn times_are_written_as_chrono_writes_them(
            unix_seconds in -62_167_219_200_i64..253_402_300_800,
            offset_minutes in -(23 * 60 + 59)..(23 * 60 + 59),
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).expect("offset");
            let expected = DateTime::from_timestamp(unix_seconds, 0)
                .expect("time")
                .with_timezone(&offset)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            proptest::prop_assert_eq!(ApiTime { unix_seconds, offset }.to_string(), expected);
        }
    }

    #[test]
    fn times_are_rfc3339_in_the_configured_offset() {
        let at = |unix_seconds, offset| ApiTime {
            unix_seconds,
            offset: FixedOffset::east_opt(offset).expect("offset"),
        };
        for (unix_seconds, offset) in [
            (1_624_530_285, 8 * 3600),
            (0, 0),
            (1_700_000_000, -(5 * 3600 + 30 * 60)),
            (4_102_444_799, 14 * 3600),
            (253_402_300_799, 0),
            (253_402_300_800, 0),
            (-62_167_219_201, 0),
        ] {
            let expected = DateTime::from_timestamp(unix_seconds, 0)
                .expect("time")
                .with_timezone(&FixedOffset::east_opt(offset).expect("offset"))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            assert_eq!(at(unix_seconds, offset).to_string(), expected);
        }
        assert_eq!(
            at(1_624_530_285, 8 * 3600).to_string(),
            "2021-06-24T18:24:45+08:00"
        );
        assert_eq!(
            serde_json::to_string(&at(0, 0)).expect("json"),
            "\"1970-01-01T00:00:00+00:00\""
        );
    }
}
