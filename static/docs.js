// Starts Swagger UI on /docs over the service's own OpenAPI document. It is a
// file of its own, not an inline script, so the page keeps its strict CSP.

const root = document.getElementById("swagger-ui");

window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  domNode: root,
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  // The document is checked by the tests; no badge is fetched from a validator elsewhere.
  validatorUrl: null,
});
