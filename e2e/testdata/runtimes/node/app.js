// Node.js on $PORT with nothing but the standard library.
const http = require('http');

// Warm up as a real app's start does (loading and running its code), so
// V8 compiles hot functions before the app listens.
function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
fib(25);

http.createServer((req, res) => {
  res.end('hello from node\n');
}).listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log('node ' + process.version + ' listening on ' + process.env.PORT);
});
