//! A Kustomize base from the platform model: the Kubernetes export's manifests
//! ([`crate::kubernetes::manifests`]) and a `kustomization.yaml` naming them, with every
//! image and its pinned tag under `images:` so that an overlay changes a tag or a registry
//! in one line (`kustomize edit set image`). Chosen over a Helm chart (docs/export.md): the
//! base is the manifests themselves, with no template language between the model and what
//! is applied, and it can be rendered and checked where autogit is tested (`kubectl
//! kustomize`), where Helm is not installable.

use crate::emit::to_yaml;
use crate::kubernetes;
use crate::state::PlatformState;
use serde_json::json;
use std::collections::BTreeMap;

/// The file Kustomize reads.
pub const KUSTOMIZATION: &str = "kustomization.yaml";

/// `repository[:tag]` split at the tag's colon (a registry's port is not a tag).
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], Some(&image[last_slash + i + 1..])),
        None => (image, None),
    }
}

/// The base: the manifests, then `kustomization.yaml`.
pub fn files(st: &PlatformState, rendered: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = kubernetes::manifests(st, rendered);
    let resources: Vec<&str> = out.iter().map(|(f, _)| f.as_str()).collect();
    let mut images: BTreeMap<&str, &str> = BTreeMap::new();
    for s in st.services.iter().filter(|s| kubernetes::in_cluster(s)) {
        if let (name, Some(tag)) = split_image(&s.image) {
            images.insert(name, tag);
        }
    }
    let images: Vec<_> = images
        .into_iter()
        .map(|(name, tag)| json!({"name": name, "newTag": tag}))
        .collect();
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    if !images.is_empty() {
        k["images"] = json!(images);
    }
    let text = format!(
        "# Rendered by autogit: a Kustomize base of the platform ({project}): the Kubernetes export's\n# manifests. Create the Secrets named in namespace.yaml, then: kubectl apply -k .\n# An overlay: resources: [../base], then images/patches of its own.\n{}",
        to_yaml(&k),
        project = st.project,
    );
    out.push((KUSTOMIZATION.to_owned(), text));
    out
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn image_names_and_tags() {
        assert_eq!(
            split_image("gitlab/gitlab-ce:17.8.1-ce.0"),
            ("gitlab/gitlab-ce", Some("17.8.1-ce.0"))
        );
        assert_eq!(
            split_image("registry.local:5000/tools/x:1.2"),
            ("registry.local:5000/tools/x", Some("1.2"))
        );
        assert_eq!(
            split_image("registry.local:5000/tools/x"),
            ("registry.local:5000/tools/x", None)
        );
        assert_eq!(split_image("busybox"), ("busybox", None));
    }
}
