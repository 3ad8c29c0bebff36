//! Parsing of the raw query string of the record listings
//! (`/api/v4/leads`, `/api/v4/contacts`, `/api/v4/companies`, one parser
//! for all three). It exists because the Kommo query repeats keys
//! (`filter[id]=1&filter[id]=2`), nests brackets that clients
//! percent-encode (`filter%5Bupdated_at%5D%5Bfrom%5D`) and depends on key
//! order (`order[...]`), which no typed extractor keeps.
//! Also builds the `_links` hrefs: same query, other page.

use std::collections::BTreeSet;

use serde_json::Value;

/// A field the list can be ordered by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum SortField {
    Id,
    CreatedAt,
    UpdatedAt,
}

/// An inclusive range filter on one timestamp field.
#[derive(Debug)]
pub(crate) struct Range {
    field: &'static str,
    from: Option<i64>,
    to: Option<i64>,
}

/// What a list request asks for.
#[derive(Debug)]
pub(crate) struct ListQuery {
    pub(crate) page: u64,
    pub(crate) limit: u64,
    pub(crate) only_deleted: bool,
    /// `with=contacts`: leads carry `_embedded.contacts`
    pub(crate) with_contacts: bool,
    /// `with=leads`: contacts and companies carry `_embedded.leads`
    pub(crate) with_leads: bool,
    ranges: Vec<Range>,
    ids: Option<BTreeSet<i64>>,
    /// `(field, descending)`, primary first.
    pub(crate) order: Vec<(SortField, bool)>,
}

/// A `400` validation failure: the parameter path and a message.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) path: String,
    pub(crate) detail: String,
}

pub(crate) fn invalid(path: &str, detail: &str) -> Invalid {
    Invalid {
        path: path.to_string(),
        detail: detail.to_string(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding; bad escapes stay literal.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `(key, value)` pairs of a raw query, in order.
pub(crate) fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(seg), String::new()),
        })
        .collect()
}

pub(crate) fn number(path: &str, v: &str) -> Result<i64, Invalid> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| invalid(path, "This value should be a valid number."))
}

fn positive(path: &str, v: &str) -> Result<u64, Invalid> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| invalid(path, "This value should be a valid number."))
}

impl ListQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Result<ListQuery, Invalid> {
        let mut q = ListQuery {
            page: 1,
            limit: 50,
            only_deleted: false,
            with_contacts: false,
            with_leads: false,
            ranges: Vec::new(),
            ids: None,
            order: Vec::new(),
        };
        for (key, value) in pairs(raw.unwrap_or("")) {
            match key.as_str() {
                "page" => {
                    q.page = positive("page", &value)?;
                    if q.page == 0 {
                        return Err(invalid("page", "This value should be 1 or more."));
                    }
                }
                "limit" => {
                    q.limit = positive("limit", &value)?;
                    if q.limit == 0 || q.limit > 250 {
                        return Err(invalid("limit", "This value should be between 1 and 250."));
                    }
                }
                "with" => {
                    q.only_deleted |= value.split(',').any(|w| w.trim() == "only_deleted");
                    q.with_contacts |= value.split(',').any(|w| w.trim() == "contacts");
                    q.with_leads |= value.split(',').any(|w| w.trim() == "leads");
                }
                _ => q.parse_bracketed(&key, &value)?,
            }
        }
        Ok(q)
    }

    fn parse_bracketed(&mut self, key: &str, value: &str) -> Result<(), Invalid> {
        if let Some(rest) = key.strip_prefix("order[")
            && let Some(name) = rest.strip_suffix(']')
        {
            let field = match name {
                "id" => SortField::Id,
                "created_at" => SortField::CreatedAt,
                "updated_at" => SortField::UpdatedAt,
                _ => return Ok(()),
            };
            let desc = match value.trim().to_ascii_lowercase().as_str() {
                "asc" => false,
                "desc" => true,
                _ => return Err(invalid(key, "This value should be asc or desc.")),
            };
            match self.order.iter_mut().find(|(f, _)| *f == field) {
                Some(slot) => slot.1 = desc,
                None => self.order.push((field, desc)),
            }
            return Ok(());
        }
        let Some(rest) = key.strip_prefix("filter[") else {
            return Ok(());
        };
        if is_id_filter(rest) {
            // an empty value is ignored rather than matching nothing
            for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                let id = number(key, part)?;
                self.ids.get_or_insert_with(BTreeSet::new).insert(id);
            }
            return Ok(());
        }
        for field in ["updated_at", "created_at", "closed_at", "closest_task_at"] {
            let Some(bound) = rest
                .strip_prefix(field)
                .and_then(|r| r.strip_prefix("]["))
                .and_then(|r| r.strip_suffix(']'))
            else {
                continue;
            };
            if bound != "from" && bound != "to" {
                return Ok(());
            }
            let n = number(key, value)?;
            let idx = match self.ranges.iter().position(|r| r.field == field) {
                Some(i) => i,
                None => {
                    self.ranges.push(Range {
                        field,
                        from: None,
                        to: None,
                    });
                    self.ranges.len() - 1
                }
            };
            let r = &mut self.ranges[idx];
            if bound == "from" {
                r.from = Some(n);
            } else {
                r.to = Some(n);
            }
            return Ok(());
        }
        Ok(())
    }

    /// Forgets every `filter[...]` (an account without the filtering
    /// add-on); order, page, limit and `with` stay.
    pub(crate) fn drop_filters(&mut self) {
        self.ranges.clear();
        self.ids = None;
    }

    /// Whether a record object passes every filter (a missing or non-integer
    /// field matches no filter on it).
    pub(crate) fn matches(&self, record: &Value) -> bool {
        if let Some(ids) = &self.ids
            && !record
                .get("id")
                .and_then(Value::as_i64)
                .is_some_and(|id| ids.contains(&id))
        {
            return false;
        }
        self.ranges.iter().all(|r| {
            let Some(t) = record.get(r.field).and_then(Value::as_i64) else {
                return false;
            };
            r.from.is_none_or(|f| t >= f) && r.to.is_none_or(|to| t <= to)
        })
    }
}

/// Whether `rest`, a query key after its `filter[` prefix, is the id
/// filter: `id]`, `id][]` or `id][N]`.
pub(crate) fn is_id_filter(rest: &str) -> bool {
    rest == "id]"
        || rest == "id][]"
        || rest
            .strip_prefix("id][")
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|n| n.parse::<u64>().is_ok())
}

/// The href of the same list request with `page` set to `page`.
pub(crate) fn page_href(base_url: &str, path: &str, raw: Option<&str>, page: u64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut placed = false;
    for seg in raw.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let key = decode(seg.split_once('=').map_or(seg, |(k, _)| k));
        if key == "page" {
            if !placed {
                parts.push(format!("page={page}"));
                placed = true;
            }
        } else {
            parts.push(seg.to_string());
        }
    }
    if !placed {
        parts.push(format!("page={page}"));
    }
    format!("{base_url}{path}?{}", parts.join("&"))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn decodes_brackets_and_plus() {
        assert_eq!(decode("filter%5Bid%5D%5B%5D"), "filter[id][]");
        assert_eq!(decode("a+b%2"), "a b%2");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn parses_and_rejects() {
        let q = ListQuery::parse(Some(
            "filter%5Bid%5D=5&filter[id][]=6&filter[id][0]=7&order[updated_at]=desc&order[id]=asc&limit=250&x=y",
        ))
        .expect("valid");
        assert_eq!(q.ids.as_ref().map(|s| s.len()), Some(3));
        assert_eq!(
            q.order,
            vec![(SortField::UpdatedAt, true), (SortField::Id, false)]
        );
        assert!(ListQuery::parse(Some("limit=251")).is_err());
        assert!(ListQuery::parse(Some("limit=0")).is_err());
        assert!(ListQuery::parse(Some("page=x")).is_err());
        assert!(ListQuery::parse(Some("filter[updated_at][from]=1e3")).is_err());
        assert!(ListQuery::parse(Some("order[id]=up")).is_err());
    }

    #[test]
    fn href_replaces_page() {
        assert_eq!(
            page_href("http://h", "/p", Some("limit=5&page=1&x=%5B"), 2),
            "http://h/p?limit=5&page=2&x=%5B"
        );
        assert_eq!(page_href("http://h", "/p", None, 3), "http://h/p?page=3");
    }
}
