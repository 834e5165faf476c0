//! # jetsource-derive
//!
//! The derives of `jetsource-core`, re-exported there:
//!
//! - `#[derive(DomainEvent)]` on an event enum: each variant's stable name (the variant name,
//!   or `#[serde(rename)]` / `#[event(name = "...")]`) and schema version
//!   (`#[event(version = 2)]`, default 1), declared once; `#[event(upcasters = path)]` on the
//!   enum names the function building its upcasting chain.
//! - `#[derive(Command)]` on a command enum with `#[command(aggregate = Type)]`: each variant is
//!   a command named in kebab case (or `#[command(name = "...")]`), with a strict JSON body made
//!   of its fields (unknown fields refused; `#[serde]` and `#[schemars]` field attributes apply),
//!   a JSON Schema, and flags `asynchronous` and `internal`; a field marked
//!   `#[command(lookup)]` is not in the body and is filled in by the service before `handle`;
//!   a variant marked `#[command(skip)]` is built in code only and never parsed.
//!
//! Generated code names `::jetsource_core`, so a crate using the derives depends on it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, Ident, Lit, Meta, Path, Token, parse_macro_input};

/// Derives `jetsource_core::DomainEvent`; see the crate docs.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    domain_event(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `jetsource_core::Command`; see the crate docs.
#[proc_macro_derive(Command, attributes(command, serde, schemars))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// `name = value` and bare `flag` items of `#[<attr>(...)]`.
fn items(attrs: &[Attribute], attr: &str) -> syn::Result<Vec<Meta>> {
    let mut out = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident(attr)) {
        out.extend(a.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?);
    }
    Ok(out)
}

fn string(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Ok(s.value()),
            other => Err(syn::Error::new_spanned(other, "expected a string")),
        },
        other => Err(syn::Error::new_spanned(other, "expected a string")),
    }
}

fn path(expr: &Expr) -> syn::Result<Path> {
    match expr {
        Expr::Path(p) => Ok(p.path.clone()),
        other => Err(syn::Error::new_spanned(other, "expected a path")),
    }
}

/// `#[serde(rename = "...")]` of a variant, if any.
fn serde_rename(attrs: &[Attribute]) -> syn::Result<Option<String>> {
    for meta in items(attrs, "serde")? {
        if let Meta::NameValue(nv) = &meta
            && nv.path.is_ident("rename")
        {
            return string(&nv.value).map(Some);
        }
    }
    Ok(None)
}

fn doc(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => string(&nv.value).ok(),
            _ => None,
        })
        .map(|l| l.trim().to_owned())
        .collect();
    lines.join(" ").trim().to_owned()
}

fn variants(input: &DeriveInput) -> syn::Result<&Punctuated<syn::Variant, Token![,]>> {
    match &input.data {
        Data::Enum(data) => Ok(&data.variants),
        _ => Err(syn::Error::new_spanned(&input.ident, "only enums can be derived")),
    }
}

fn domain_event(input: &DeriveInput) -> syn::Result<Tokens> {
    let ident = &input.ident;
    let mut upcasters = None;
    for meta in items(&input.attrs, "event")? {
        match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("upcasters") => upcasters = Some(path(&nv.value)?),
            other => return Err(syn::Error::new_spanned(other, "expected `upcasters = path`")),
        }
    }
    let mut schemas = Vec::new();
    let mut arms = Vec::new();
    for variant in variants(input)? {
        let mut name = serde_rename(&variant.attrs)?.unwrap_or_else(|| variant.ident.to_string());
        let mut version = 1_u32;
        for meta in items(&variant.attrs, "event")? {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("name") => name = string(&nv.value)?,
                Meta::NameValue(nv) if nv.path.is_ident("version") => {
                    version = match &nv.value {
                        Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse()?,
                        other => return Err(syn::Error::new_spanned(other, "expected a version number")),
                    };
                    if version == 0 {
                        return Err(syn::Error::new_spanned(&nv.value, "schema versions start at 1"));
                    }
                }
                other => return Err(syn::Error::new_spanned(other, "expected `name = \"...\"` or `version = N`")),
            }
        }
        let v = &variant.ident;
        let pattern = match &variant.fields {
            Fields::Named(_) => quote!(Self::#v { .. }),
            Fields::Unnamed(_) => quote!(Self::#v(..)),
            Fields::Unit => quote!(Self::#v),
        };
        schemas.push(quote!((#name, #version)));
        arms.push(quote!(#pattern => #name));
    }
    let upcasters = upcasters.map(|p| quote!(fn upcasters() -> ::jetsource_core::Upcasters { #p() }));
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::jetsource_core::DomainEvent for #ident #ty_generics #where_clause {
            const SCHEMAS: &'static [(&'static str, u32)] = &[#(#schemas),*];
            fn event_type(&self) -> &'static str {
                match self { #(#arms),* }
            }
            #upcasters
        }
    })
}

/// `ChangeBom` → `change-bom`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn command(input: &DeriveInput) -> syn::Result<Tokens> {
    let ident = &input.ident;
    let mut aggregate = None;
    for meta in items(&input.attrs, "command")? {
        match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("aggregate") => aggregate = Some(path(&nv.value)?),
            other => return Err(syn::Error::new_spanned(other, "expected `aggregate = Type`")),
        }
    }
    let aggregate = aggregate.ok_or_else(|| {
        syn::Error::new(Span::call_site(), "#[derive(Command)] needs #[command(aggregate = Type)] on the enum")
    })?;
    let module = format_ident!("__jetsource_command_{}", ident);
    let mut bodies = Vec::new();
    let mut specs = Vec::new();
    let mut names = Vec::new();
    let mut parses = Vec::new();
    for variant in variants(input)? {
        let v = &variant.ident;
        let mut name = kebab(&v.to_string());
        let (mut asynchronous, mut internal, mut skip, mut example) = (false, false, false, String::from("{}"));
        for meta in items(&variant.attrs, "command")? {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("name") => name = string(&nv.value)?,
                Meta::NameValue(nv) if nv.path.is_ident("example") => example = string(&nv.value)?,
                Meta::Path(p) if p.is_ident("asynchronous") => asynchronous = true,
                Meta::Path(p) if p.is_ident("internal") => internal = true,
                Meta::Path(p) if p.is_ident("skip") => skip = true,
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "expected `name = \"...\"`, `example = \"...\"`, `asynchronous`, `internal` or `skip`",
                    ));
                }
            }
        }
        let pattern = match &variant.fields {
            Fields::Named(_) => quote!(Self::#v { .. }),
            _ => quote!(Self::#v),
        };
        names.push(quote!(#pattern => #name));
        if skip {
            continue; // built in code only (a service's own command), never parsed
        }
        let description = doc(&variant.attrs);
        let body = Ident::new(&v.to_string(), v.span());
        let mut body_fields = Vec::new();
        let mut build = Vec::new();
        match &variant.fields {
            Fields::Named(fields) => {
                for field in &fields.named {
                    let f = field.ident.as_ref().ok_or_else(|| syn::Error::new_spanned(field, "named field"))?;
                    let mut lookup = false;
                    for meta in items(&field.attrs, "command")? {
                        match &meta {
                            Meta::Path(p) if p.is_ident("lookup") => lookup = true,
                            other => return Err(syn::Error::new_spanned(other, "expected `lookup`")),
                        }
                    }
                    if lookup {
                        build.push(quote!(#f: ::core::default::Default::default()));
                        continue;
                    }
                    let ty = &field.ty;
                    let kept: Vec<&Attribute> = field
                        .attrs
                        .iter()
                        .filter(|a| {
                            a.path().is_ident("serde") || a.path().is_ident("schemars") || a.path().is_ident("doc")
                        })
                        .collect();
                    body_fields.push(quote!(#(#kept)* pub #f: #ty));
                    build.push(quote!(#f: body.#f));
                }
            }
            Fields::Unit => {}
            Fields::Unnamed(_) => {
                return Err(syn::Error::new_spanned(variant, "command variants have named fields or none"));
            }
        }
        let title = format!("{ident}::{v}");
        bodies.push(quote! {
            #[derive(::jetsource_core::__private::serde::Deserialize, ::jetsource_core::__private::schemars::JsonSchema)]
            #[serde(crate = "::jetsource_core::__private::serde", deny_unknown_fields)]
            #[schemars(crate = "::jetsource_core::__private::schemars", title = #title)]
            pub struct #body { #(#body_fields),* }
        });
        specs.push(quote! {
            ::jetsource_core::CommandSpec {
                name: #name,
                asynchronous: #asynchronous,
                internal: #internal,
                example: #example,
                description: #description,
                schema: || ::jetsource_core::__private::schemars::schema_for!(#module::#body),
            }
        });
        let construct = match &variant.fields {
            Fields::Named(_) => quote!(Self::#v { #(#build),* }),
            _ => quote!(Self::#v),
        };
        parses.push(quote! {
            #name => {
                #[allow(unused_variables)]
                let body: #module::#body = ::jetsource_core::parse_body(body)?;
                ::core::result::Result::Ok(#construct)
            }
        });
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, unused_imports, missing_docs)]
        mod #module {
            use super::*;
            #(#bodies)*
        }

        impl #impl_generics ::jetsource_core::Command for #ident #ty_generics #where_clause {
            const SPECS: &'static [::jetsource_core::CommandSpec] = &[#(#specs),*];

            fn name(&self) -> &'static str {
                match self { #(#names),* }
            }

            fn parse(name: &str, body: &[u8]) -> ::core::result::Result<Self, ::jetsource_core::CommandParseError> {
                match name {
                    #(#parses)*
                    _ => ::core::result::Result::Err(::jetsource_core::CommandParseError::unknown(
                        <#aggregate as ::jetsource_core::Aggregate>::TYPE,
                        name,
                        <Self as ::jetsource_core::Command>::SPECS,
                    )),
                }
            }
        }

        impl #impl_generics #ident #ty_generics #where_clause {
            /// Parses command `name` with JSON `body`, strictly (see `jetsource_core::Command`).
            ///
            /// # Errors
            /// Unknown command, or a body that does not fit.
            pub fn parse(name: &str, body: &[u8]) -> ::core::result::Result<Self, ::jetsource_core::CommandParseError> {
                <Self as ::jetsource_core::Command>::parse(name, body)
            }
        }
    })
}
