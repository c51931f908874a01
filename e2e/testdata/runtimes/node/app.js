// Node.js on $PORT with nothing but the standard library.
const http = require('http');
http.createServer((req, res) => {
  res.end('hello from node\n');
}).listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log('node ' + process.version + ' listening on ' + process.env.PORT);
});
