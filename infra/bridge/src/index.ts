// nbembed bridge: lets the host page that embeds this notebook save it, and
// tells that page about every save. Works in JupyterLab 4 and Notebook 7.
//
// Only pages whose origin is in the page config option `nbembedAllowedOrigins`
// (set by the hub from the allowed host origins) are listened to, and replies
// go to that exact origin, never "*".

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import {
  BridgeMessage,
  isAllowedOrigin,
  parseAllowedOrigins,
  parseHostMessage,
  PROTOCOL
} from './protocol.js';

function tellHost(message: BridgeMessage, origins: readonly string[]): void {
  // The parent's origin is not readable from here: post to each allowed one;
  // the browser delivers only to the one that matches.
  for (const origin of origins) {
    window.parent.postMessage(message, origin);
  }
}

function watchSaves(panel: NotebookPanel, origins: readonly string[]): void {
  panel.context.saveState.connect((_, state) => {
    if (state === 'completed') {
      tellHost(
        {
          protocol: PROTOCOL,
          type: 'user-saved',
          path: panel.context.path,
          lastModified: panel.context.contentsModel?.last_modified ?? ''
        },
        origins
      );
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbembed-bridge:plugin',
  description: 'Save or reload the embedded notebook from the host page (postMessage).',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, notebooks: INotebookTracker) => {
    const allowed = parseAllowedOrigins(PageConfig.getOption('nbembedAllowedOrigins'));
    if (window.parent === window || allowed.length === 0) {
      return; // not embedded, or no host page is allowed to talk to us
    }

    notebooks.widgetAdded.connect((_, panel) => {
      void panel.context.ready.then(() => {
        watchSaves(panel, allowed);
        tellHost({ protocol: PROTOCOL, type: 'ready', path: panel.context.path }, allowed);
      });
    });

    window.addEventListener('message', event => {
      if (event.source !== window.parent || !isAllowedOrigin(event.origin, allowed)) {
        return;
      }
      const request = parseHostMessage(event.data);
      if (request === null) {
        return;
      }
      const reply = (message: BridgeMessage) => window.parent.postMessage(message, event.origin);
      const panel = notebooks.currentWidget;
      if (panel === null) {
        reply({ protocol: PROTOCOL, type: 'error', requestId: request.requestId, reason: 'no notebook is open' });
        return;
      }
      const context = panel.context;
      // A reload reads the file again (context.revert): the document then knows
      // the file's new timestamp, so the next save raises no "file changed on
      // disk" dialog. Unsaved edits are dropped, as a restore means.
      const done = request.type === 'reload' ? context.revert() : context.save();
      done
        .then(() =>
          reply({
            protocol: PROTOCOL,
            type: request.type === 'reload' ? 'reloaded' : 'saved',
            requestId: request.requestId,
            path: context.path,
            lastModified: context.contentsModel?.last_modified ?? ''
          })
        )
        .catch((error: unknown) =>
          reply({
            protocol: PROTOCOL,
            type: 'error',
            requestId: request.requestId,
            reason: error instanceof Error ? error.message : String(error)
          })
        );
    });

    void app.restored.then(() => {
      // JupyterLab: one notebook, not a workspace (Notebook 7 has no left panel).
      const shell = app.shell as unknown as { collapseLeft?: () => void };
      shell.collapseLeft?.();
    });
  }
};

export default plugin;
