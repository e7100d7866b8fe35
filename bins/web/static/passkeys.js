// Passkeys (WebAuthn) for auth-web. The only script of the site: every other page
// works without JavaScript. A form marked data-passkey="register" or "login" asks the
// server to start a ceremony (its action + "/start", with the form's fields), runs it
// in the browser, puts the authenticator's answer in the form's hidden `credential`
// field and submits the form as usual: the server answers with a page.
"use strict";
(() => {
  if (!window.PublicKeyCredential) return;

  const toBytes = (b64u) => {
    const b64 = b64u.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  };
  const toB64u = (buf) => {
    let s = "";
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  // The server's options, with their binary fields as ArrayBuffers.
  const creationOptions = (options) => {
    const pk = options.publicKey;
    pk.challenge = toBytes(pk.challenge);
    pk.user.id = toBytes(pk.user.id);
    for (const c of pk.excludeCredentials || []) c.id = toBytes(c.id);
    // A discoverable credential, so that it also signs in without a username.
    pk.authenticatorSelection = Object.assign({}, pk.authenticatorSelection, {
      residentKey: "required",
      requireResidentKey: true,
    });
    return { publicKey: pk };
  };
  const requestOptions = (options) => {
    const pk = options.publicKey;
    pk.challenge = toBytes(pk.challenge);
    for (const c of pk.allowCredentials || []) c.id = toBytes(c.id);
    return { publicKey: pk };
  };

  // A credential as the server reads it: binary fields base64url.
  const credentialJson = (cred) => {
    const r = cred.response;
    const out = {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64u(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64u(r.attestationObject);
    } else {
      out.response.authenticatorData = toB64u(r.authenticatorData);
      out.response.signature = toB64u(r.signature);
      out.response.userHandle = r.userHandle ? toB64u(r.userHandle) : null;
    }
    return JSON.stringify(out);
  };

  const show = (form, text) => {
    let p = form.querySelector(".passkey-error");
    if (!p) {
      p = document.createElement("p");
      p.className = "error passkey-error";
      p.setAttribute("role", "alert");
      form.prepend(p);
    }
    p.textContent = text;
  };

  for (const form of document.querySelectorAll("form[data-passkey]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new URLSearchParams(new FormData(form));
      fields.delete("credential");
      fields.delete("ceremony_id");
      try {
        const reply = await fetch(form.action + "/start", {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: fields,
          credentials: "same-origin",
        });
        const started = await reply.json();
        if (!reply.ok) throw new Error(started.error ? started.error.message : "failed");
        const register = form.dataset.passkey === "register";
        const cred = register
          ? await navigator.credentials.create(creationOptions(started.options))
          : await navigator.credentials.get(requestOptions(started.options));
        form.elements.ceremony_id.value = started.ceremony_id;
        form.elements.credential.value = credentialJson(cred);
        form.submit();
      } catch (e) {
        show(form, e && e.name === "NotAllowedError"
          ? "The passkey prompt was cancelled or timed out."
          : "Passkey: " + (e && e.message ? e.message : e));
      }
    });
  }
})();
