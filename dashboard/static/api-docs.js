// Starts Swagger UI on /api/docs from the locally served bundle (no CDN, no inline script: the page's CSP
// admits scripts from this server only). The schema's address comes from the page's data attribute.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    validatorUrl: null  // the default sends the schema to validator.swagger.io
  });
})();
