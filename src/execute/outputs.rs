//! Writing the image out of the blob store: to each `[[output]]` and `--output` of the
//! pipeline (an OCI image layout folder, or a tar that `docker load` and `podman load` read).

use super::{ApplyError, Options};
use crate::execute::events::{Event, Sink};
use crate::image::bridge::blocking;
use crate::image::layout::{self, Contents};
use crate::image::store::BlobStore;
use crate::image::Image;
use crate::model::{OutputKind, Pipeline};

/// The blob store the outputs are written from.
pub(super) fn store<'a>(p: &Pipeline, opts: &'a Options) -> Result<&'a BlobStore, ApplyError> {
    opts.store.as_ref().ok_or_else(|| {
        failed(
            p,
            "no folder for the blob store: set HOME or XDG_CACHE_HOME".into(),
        )
    })
}

/// Writing `p`'s outputs failed before any was written.
pub(super) fn failed(p: &Pipeline, why: String) -> ApplyError {
    ApplyError::Output {
        output: p
            .outputs
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        source: std::io::Error::other(why),
    }
}

/// Writes `images` (one, or every platform's) to each output of `p`; the names they get
/// where they are loaded are the pipeline's local tags (none for several platforms).
pub(super) async fn write_outputs(
    p: &Pipeline,
    store: &BlobStore,
    images: &[Image],
    sink: &dyn Sink,
) -> Result<(), ApplyError> {
    let names: Vec<String> = if images.len() == 1 {
        p.commit.tags.iter().map(ToString::to_string).collect()
    } else {
        Vec::new()
    };
    for output in &p.outputs {
        let (store, images, names, o) = (
            store.clone(),
            images.to_vec(),
            names.clone(),
            output.clone(),
        );
        let digest = blocking(move || {
            let c = Contents {
                images: &images,
                names: &names,
            };
            match o.kind {
                OutputKind::Oci => layout::write_oci(&store, c, &o.path),
                OutputKind::Tar => layout::write_tar(&store, c, &o.path),
            }
        })
        .await
        .map_err(|source| ApplyError::Output {
            output: output.to_string(),
            source,
        })?;
        sink.event(Event::Written {
            output: output.to_string(),
            digest,
        });
    }
    Ok(())
}
