//! The privacy notice must tell the truth: a custom notice (`replies.privacy_notice`) may only
//! name the periods the policy applies. The built-in notice (`templates/<lang>/privacy.j2`) is
//! rendered from the policy and cannot disagree with it.
//!
//! Periods are read the way people write them, in French and English, in digits or words:
//! "six mois", "24 months", "deux ans", "a year", "90 jours". A period is allowed when it is one
//! of the policy's retention periods (the default, a posting's own, the one by consent) or the
//! legal month within which a request is answered (GDPR art. 12(3)).

use crate::config::Config;
use crate::understand::classify::fold;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Days,
    Weeks,
    Months,
    Years,
}

/// A period named in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    amount: u32,
    unit: Unit,
    /// As it was written (folded), for the error message.
    pub text: String,
}

impl Period {
    /// Whether this is `months` months, however it is written (days and weeks within 3 days).
    fn is_months(&self, months: u32) -> bool {
        match self.unit {
            Unit::Months => self.amount == months,
            Unit::Years => self.amount * 12 == months,
            Unit::Days | Unit::Weeks => {
                let days = if self.unit == Unit::Weeks { self.amount * 7 } else { self.amount } as f64;
                (days - f64::from(months) * 30.44).abs() <= 3.0
            }
        }
    }
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word {
        "jour" | "jours" | "day" | "days" => Unit::Days,
        "semaine" | "semaines" | "week" | "weeks" => Unit::Weeks,
        "mois" | "month" | "months" => Unit::Months,
        "an" | "ans" | "annee" | "annees" | "year" | "years" => Unit::Years,
        _ => return None,
    })
}

fn digit_word(w: &str) -> Option<u32> {
    Some(match w {
        "un" | "une" | "one" | "a" => 1,
        "deux" | "two" => 2,
        "trois" | "three" => 3,
        "quatre" | "four" => 4,
        "cinq" | "five" => 5,
        "six" => 6,
        "sept" | "seven" => 7,
        "huit" | "eight" => 8,
        "neuf" | "nine" => 9,
        _ => return None,
    })
}

fn teen_word(w: &str) -> Option<u32> {
    Some(match w {
        "dix" | "ten" => 10,
        "onze" | "eleven" => 11,
        "douze" | "twelve" => 12,
        "treize" | "thirteen" => 13,
        "quatorze" | "fourteen" => 14,
        "quinze" | "fifteen" => 15,
        "seize" | "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        _ => return None,
    })
}

fn tens_word(w: &str) -> Option<u32> {
    Some(match w {
        "vingt" | "twenty" => 20,
        "trente" | "thirty" => 30,
        "quarante" | "forty" => 40,
        "cinquante" | "fifty" => 50,
        "soixante" | "sixty" => 60,
        _ => return None,
    })
}

/// A number starting at `words[i]`: its value and how many words it took.
fn number_at(words: &[&str], i: usize) -> Option<(u32, usize)> {
    let w = *words.get(i)?;
    if let Ok(n) = w.parse::<u32>() {
        return Some((n, 1));
    }
    let next = words.get(i + 1).copied().unwrap_or_default();
    let after = words.get(i + 2).copied().unwrap_or_default();
    if let Some(tens) = tens_word(w) {
        // "vingt-quatre", "twenty four", "vingt et un"
        if next == "et"
            && let Some(d) = digit_word(after)
        {
            return Some((tens + d, 3));
        }
        if let Some(d) = digit_word(next).filter(|_| next != "a") {
            return Some((tens + d, 2));
        }
        return Some((tens, 1));
    }
    if w == "dix"
        && let Some(d @ 7..=9) = digit_word(next)
    {
        return Some((10 + d, 2));
    }
    teen_word(w).or_else(|| digit_word(w)).map(|n| (n, 1))
}

/// Every period the text names.
pub fn periods(text: &str) -> Vec<Period> {
    let folded = fold(text);
    let words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if let Some((amount, len)) = number_at(&words, i)
            && let Some(u) = words.get(i + len).and_then(|w| unit(w))
            // "a year", but not the folded French "à jour" (up to date).
            && (words[i] != "a" || words[i + len].is_ascii() && !["jour", "jours", "an", "ans", "mois"].contains(&words[i + len]))
        {
            out.push(Period { amount, unit: u, text: words[i..=i + len].join(" ") });
            i += len + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// Checks `replies.privacy_notice` against the policy. `Ok` for an empty notice (the built-in one
/// is rendered from the policy).
pub fn check_custom_notice(cfg: &Config) -> Result<(), String> {
    let notice = cfg.replies.privacy_notice.trim();
    if notice.is_empty() {
        return Ok(());
    }
    let p = &cfg.privacy;
    let mut allowed: Vec<(u32, String)> = vec![
        (p.retention_months, "privacy.retention_months".into()),
        (p.consent_retention_months, "privacy.consent_retention_months".into()),
        // The month within which a request is answered (GDPR art. 12(3)).
        (1, "the legal month to answer a request".into()),
    ];
    for (i, posting) in cfg.postings.iter().enumerate() {
        if let Some(m) = posting.retention_months {
            allowed.push((m, format!("postings[{i}].retention_months")));
        }
    }
    let named = periods(notice);
    let policy = format!(
        "the policy keeps candidates {} month(s) (privacy.retention_months), {} month(s) with their consent",
        p.retention_months, p.consent_retention_months
    );
    for period in &named {
        if !allowed.iter().any(|(m, _)| period.is_months(*m)) {
            return Err(format!(
                "names a period of \"{}\", but {policy}: write the policy's period, or leave \
                 replies.privacy_notice empty to use the notice rendered from the policy",
                period.text
            ));
        }
    }
    if !named.iter().any(|period| period.is_months(p.retention_months)) {
        return Err(format!(
            "does not say how long data is kept ({policy}; GDPR art. 13(2)(a)): name the period, or leave \
             replies.privacy_notice empty to use the notice rendered from the policy"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(text: &str) -> Vec<String> {
        periods(text).into_iter().map(|p| p.text).collect()
    }

    #[test]
    fn periods_are_read_as_people_write_them() {
        assert_eq!(named("conservées six mois au plus"), ["six mois"]);
        assert_eq!(named("kept for 24 months, or two years"), ["24 months", "two years"]);
        assert_eq!(
            named("pendant vingt-quatre mois ; réponse dans un délai d'un mois"),
            ["vingt quatre mois", "un mois"]
        );
        assert_eq!(
            named("dix-huit mois, a year, 90 jours, trois semaines"),
            ["dix huit mois", "a year", "90 jours", "trois semaines"]
        );
        assert!(named("un délai raisonnable, un an et demi").contains(&"un an".to_owned()));
        assert!(named("Vos données sont traitées par La 27e Région.").is_empty());
        assert!(named("mettez à jour vos données à tout moment").is_empty());
    }

    #[test]
    fn amounts_compare_across_units() {
        let p = |t: &str| periods(t).remove(0);
        assert!(p("3 mois").is_months(3));
        assert!(p("deux ans").is_months(24));
        assert!(p("90 jours").is_months(3));
        assert!(p("13 weeks").is_months(3));
        assert!(!p("six mois").is_months(3));
    }
}
