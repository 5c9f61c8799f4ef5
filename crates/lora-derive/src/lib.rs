//! `#[derive(Adaptable)]`: model surgery for your own Burn models.
//!
//! The derive implements `lora_surgery::Adaptable` for a struct with named fields by listing the
//! adaptable linear layers of each field under the field's name (nested structs, `Vec` and
//! `Option` compose with dots and indices, as in PyTorch's module names). Field attributes:
//!
//! - `#[adaptable(skip)]`: leave the field out (for types that do not implement `Adaptable`);
//! - `#[adaptable(rename = "name")]`: use another module name (e.g. Hugging Face's);
//! - `#[adaptable(output_head)]`: the field is an output head, which `all-linear` leaves out.
//!
//! On the struct, `#[adaptable(crate = "lora_burn::surgery")]` names the path of the crate that
//! defines the trait, for code that depends on a crate re-exporting it (the default is
//! `::lora_surgery`).
//!
//! Common Burn layers without linear weights (norms, embeddings, dropout, activations) and
//! plain values already implement `Adaptable` with no modules (a `LayerNorm` lists its `beta`
//! as a bias), so they need no attribute.
//!
//! Use it through `lora_surgery`, which re-exports it with the trait (this example runs as a
//! test of `lora-surgery`'s crate documentation; a proc-macro crate cannot depend on the crate
//! its expansion names without a second build of Burn):
//!
//! ```ignore
//! use burn::module::Module;
//! use burn::nn::{LayerNorm, LayerNormConfig};
//! use lora_core::{LoraLinear, LoraLinearConfig};
//! use lora_surgery::Adaptable; // the trait and this derive
//!
//! #[derive(Module, Debug, Adaptable)]
//! struct Attention {
//!     q_proj: LoraLinear,
//!     v_proj: LoraLinear,
//! }
//!
//! #[derive(Module, Debug, Adaptable)]
//! struct Block {
//!     #[adaptable(rename = "self_attn")]
//!     attention: Attention,
//!     norm: LayerNorm,
//! }
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let linear = || LoraLinearConfig::new(8, 8).init(&device);
//! let mut block = Block {
//!     attention: Attention { q_proj: linear(), v_proj: linear() },
//!     norm: LayerNormConfig::new(8).init(&device),
//! };
//! let names: Vec<String> = block.linears().into_iter().map(|(name, _)| name).collect();
//! assert_eq!(names, ["self_attn.q_proj", "self_attn.v_proj"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr, parse_macro_input};

/// Derives `lora_surgery::Adaptable` for a struct with named fields. See the crate docs.
#[proc_macro_derive(Adaptable, attributes(adaptable))]
pub fn derive_adaptable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct FieldSpec {
    ident: syn::Ident,
    name: String,
    skip: bool,
    output_head: bool,
}

/// The path of the crate that defines `Adaptable`: `::lora_surgery`, or what a struct-level
/// `#[adaptable(crate = "path")]` names (for users who depend on a crate that re-exports it,
/// such as `lora_burn::surgery`).
fn crate_path(input: &DeriveInput) -> syn::Result<syn::Path> {
    let mut path: syn::Path = syn::parse_quote!(::lora_surgery);
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("adaptable"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                path = meta.value()?.parse::<LitStr>()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("expected `crate = \"path\"`"))
            }
        })?;
    }
    Ok(path)
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "#[derive(Adaptable)] supports structs with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            input,
            "#[derive(Adaptable)] supports structs with named fields",
        ));
    };
    let mut specs = Vec::new();
    for field in &fields.named {
        let ident = field.ident.clone().expect("named field");
        let mut spec = FieldSpec {
            name: ident.to_string(),
            ident,
            skip: false,
            output_head: false,
        };
        for attr in field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("adaptable"))
        {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    spec.skip = true;
                    Ok(())
                } else if meta.path.is_ident("output_head") {
                    spec.output_head = true;
                    Ok(())
                } else if meta.path.is_ident("rename") {
                    spec.name = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else {
                    Err(meta.error("expected `skip`, `output_head` or `rename = \"...\"`"))
                }
            })?;
        }
        specs.push(spec);
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let krate = crate_path(input)?;
    let fields: Vec<(&syn::Ident, &String)> = specs
        .iter()
        .filter(|s| !s.skip)
        .map(|s| (&s.ident, &s.name))
        .collect();
    // One loop per field for a list method: `method(&self.field)` (or `&mut`), each item's
    // path prefixed with the field's name.
    let collect = |method: proc_macro2::TokenStream, mutable: bool| {
        let loops = fields.iter().map(|(ident, field_name)| {
            let access = if mutable {
                quote! { &mut self.#ident }
            } else {
                quote! { &self.#ident }
            };
            quote! {
                for (path, item) in #krate::Adaptable::#method(#access) {
                    out.push((#krate::join_path(#field_name, &path), item));
                }
            }
        });
        quote! {
            let mut out = ::std::vec::Vec::new();
            #(#loops)*
            out
        }
    };
    let linears = collect(quote! { linears }, false);
    let linears_mut = collect(quote! { linears_mut }, true);
    let biases = collect(quote! { biases }, false);
    let biases_mut = collect(quote! { biases_mut }, true);
    let heads = specs.iter().filter(|s| !s.skip).map(|s| {
        let ident = &s.ident;
        let field_name = &s.name;
        let own = s
            .output_head
            .then(|| quote! { heads.push(::std::string::String::from(#field_name)); });
        quote! {
            #own
            for path in #krate::Adaptable::output_heads(&self.#ident) {
                heads.push(#krate::join_path(#field_name, &path));
            }
        }
    });
    Ok(quote! {
        impl #impl_generics #krate::Adaptable for #name #ty_generics #where_clause {
            fn linears(&self) -> ::std::vec::Vec<(::std::string::String, &#krate::LoraLinear)> {
                #linears
            }

            fn linears_mut(&mut self) -> ::std::vec::Vec<(::std::string::String, &mut #krate::LoraLinear)> {
                #linears_mut
            }

            fn output_heads(&self) -> ::std::vec::Vec<::std::string::String> {
                let mut heads = ::std::vec::Vec::new();
                #(#heads)*
                heads
            }

            fn biases(&self) -> ::std::vec::Vec<(::std::string::String, &#krate::BiasParam)> {
                #biases
            }

            fn biases_mut(
                &mut self,
            ) -> ::std::vec::Vec<(::std::string::String, &mut #krate::BiasParam)> {
                #biases_mut
            }
        }
    })
}
