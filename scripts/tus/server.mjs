// The official tus server (@tus/server with @tus/file-store) on loopback, for the tus client's
// tests: node server.mjs PORT DIRECTORY. Prints "listening" once it accepts uploads.
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) });
server.listen({ host: '127.0.0.1', port: Number(port) }, () => console.log('listening'));
