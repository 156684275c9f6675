// Taxbridge's GraphiQL page: GraphiQL 3 on React 18, every file served by the gateway itself
// (no CDN), under a Content-Security-Policy that allows scripts from this origin only.
(function () {
  var endpoint = new URL('/graphql', window.location.href).toString();
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url: endpoint }),
      defaultEditorToolsVisibility: 'headers',
      defaultHeaders: '{\n  "Authorization": "Bearer <accessToken>"\n}\n',
      defaultQuery:
        '# Log in with loginViaPersonalApiToken, put its accessToken in the Headers tab below,\n' +
        '# then run this with the play button (or Ctrl-Enter).\nquery Me {\n  me {\n    id\n    name\n  }\n}\n',
    })
  );
})();
