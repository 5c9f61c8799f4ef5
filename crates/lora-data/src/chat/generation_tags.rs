//! `{% generation %}` … `{% endgeneration %}`: transformers' extension tag that marks assistant
//! text in training templates (TRL ships such templates). MiniJinja does not know the tag, so it
//! is rewritten to `{% if true %}` … `{% endif %}`, which renders the same text with the same
//! whitespace control (`{%-`, `-%}`, `+`).

use std::borrow::Cow;

/// `source` with every `generation` / `endgeneration` block tag replaced by `if true` / `endif`.
pub(crate) fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_tag(tag) {
            Some((len, open_ctrl, keyword, close_ctrl)) => {
                let replacement = if keyword == "generation" {
                    "if true"
                } else {
                    "endif"
                };
                out.push_str(&format!("{{%{open_ctrl} {replacement} {close_ctrl}%}}"));
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Parses `{%[-+]? generation|endgeneration [-+]?%}` at the start of `tag`: its length, the
/// whitespace-control characters and the keyword.
fn parse_tag(tag: &str) -> Option<(usize, &str, &str, &str)> {
    let body = &tag[2..];
    let open_ctrl = if body.starts_with(['-', '+']) {
        &body[..1]
    } else {
        ""
    };
    let after_open = &body[open_ctrl.len()..];
    let trimmed = after_open.trim_start();
    let keyword = ["endgeneration", "generation"]
        .into_iter()
        .find(|k| trimmed.starts_with(k))?;
    let after_kw = trimmed[keyword.len()..].trim_start();
    let (close_ctrl, after_ctrl) = match after_kw.strip_prefix(['-', '+']) {
        Some(r) => (&after_kw[..1], r),
        None => ("", after_kw),
    };
    let end = after_ctrl.strip_prefix("%}")?;
    Some((tag.len() - end.len(), open_ctrl, keyword, close_ctrl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        let src =
            "{%- for m in messages %}{%- generation -%}{{ m }}{% endgeneration %}{% endfor %}";
        assert_eq!(
            rewrite_generation_tags(src),
            "{%- for m in messages %}{%- if true -%}{{ m }}{% endif %}{% endfor %}"
        );
        let plain = "{% if generation_prompt %}x{% endif %}";
        assert_eq!(rewrite_generation_tags(plain), plain);
        assert_eq!(
            rewrite_generation_tags("{%+generation+%}"),
            "{%+ if true +%}"
        );
    }
}
