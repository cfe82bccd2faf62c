//! Copies `from` another image, linked across the pipelines of one run: a `from` that names a
//! pipeline (by its name, or by a reference it tags or publishes) copies out of that
//! pipeline's fresh image; any other must be an image reference.

use crate::diag::{Code, Diagnostic};
use crate::model::{Action, CopyFrom, Pipeline};
use crate::reference::ImageRef;

/// Links every copy `from` of `pipelines` to the pipeline that makes its image, if one does;
/// returns a located diagnostic (with the index of its pipeline) for each that names no
/// pipeline and is no reference, or names a pipeline that leaves no image behind.
pub(crate) fn link(pipelines: &mut [Pipeline]) -> Vec<(usize, Diagnostic)> {
    let names: Vec<String> = pipelines.iter().map(|p| p.name.clone()).collect();
    let images: Vec<Option<ImageRef>> = pipelines.iter().map(image_of).collect();
    let keys: Vec<Vec<String>> = pipelines
        .iter()
        .map(|p| p.written.iter().filter_map(|w| w.reference.key()).collect())
        .collect();
    let mut found = Vec::new();
    for (i, p) in pipelines.iter_mut().enumerate() {
        for step in &mut p.steps {
            let Action::Copy(c) = &mut step.action else {
                continue;
            };
            let Some(from) = c.from.as_mut() else {
                continue;
            };
            let others = |j: &usize| *j != i;
            let by_name = (0..names.len())
                .filter(others)
                .find(|&j| names[j] == from.text);
            let by_reference = from.reference.as_ref().and_then(|r| {
                let key = r.key()?;
                (0..keys.len())
                    .filter(others)
                    .find(|&j| keys[j].contains(&key))
            });
            match (by_name, by_reference) {
                (Some(j), _) => match &images[j] {
                    Some(image) => {
                        from.pipeline = Some(names[j].clone());
                        from.reference = Some(image.clone());
                    }
                    None => found.push((i, no_image(from, &names[j]))),
                },
                (None, Some(j)) => from.pipeline = Some(names[j].clone()),
                (None, None) if from.reference.is_none() => {
                    found.push((i, unknown(from, &names)));
                }
                (None, None) => {}
            }
        }
    }
    found
}

/// The reference a pipeline's image is found under after it ran: its first local tag, else
/// its first publish target.
fn image_of(p: &Pipeline) -> Option<ImageRef> {
    let local = p.written.iter().find(|w| !w.published);
    local
        .or_else(|| p.written.first())
        .map(|w| w.reference.clone())
}

fn unknown(from: &CopyFrom, names: &[String]) -> Diagnostic {
    let why = ImageRef::parse(&from.text)
        .err()
        .unwrap_or_else(|| "not a reference".into());
    let hint = if names.len() > 1 {
        format!(
            "name a pipeline of this run ({}) or write an image reference such as \"busybox:latest\"",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "write an image reference such as \"busybox:latest\", or give the pipeline it names \
         on the same command line"
            .to_string()
    };
    Diagnostic::new(
        Code::UnknownFrom,
        format!(
            "`{}` names no pipeline of this run and is no image reference ({why})",
            from.text
        ),
    )
    .at(from.span.clone())
    .hint(hint)
}

fn no_image(from: &CopyFrom, name: &str) -> Diagnostic {
    Diagnostic::new(
        Code::UnknownFrom,
        format!(
            "pipeline `{name}` leaves no image to copy from: it has no tag and publishes nothing"
        ),
    )
    .at(from.span.clone())
    .hint(format!(
        "give `{name}` a local tag: `[commit] tags = [\"{name}:latest\"]`"
    ))
}
