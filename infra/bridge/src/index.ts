// nbembed bridge: lets the host page that embeds this notebook save it, and
// tells that page about every save, its kernel and its unsaved changes. Works
// in JupyterLab 4 and Notebook 7.
//
// Only pages whose origin is in the page config option `nbembedAllowedOrigins`
// (set by the hub from the allowed host origins) are listened to, and replies
// go to that exact origin, never "*".
//
// What the host hears, in order: `hello` as soon as the bridge runs (the frame
// was allowed and Jupyter's page loaded), `ready` once the notebook's document
// is ready and its kernel connected (or READY_KERNEL_BOUND_MS after the
// document, whatever the kernel: `ready` carries its status), then `kernel`
// and `dirty` on every change, and each save exactly once (`saved` as the reply
// to a host request, `user-saved` for Jupyter's own).

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import {
  BridgeMessage,
  isAllowedOrigin,
  kernelSettled,
  kernelStatus,
  KernelStatus,
  parseAllowedOrigins,
  parseHostMessage,
  PROTOCOL,
  READY_KERNEL_BOUND_MS,
  SaveLedger
} from './protocol.js';

function tellHost(message: BridgeMessage, origins: readonly string[]): void {
  // The parent's origin is not readable from here: post to each allowed one;
  // the browser delivers only to the one that matches.
  for (const origin of origins) {
    window.parent.postMessage(message, origin);
  }
}

function currentKernel(panel: NotebookPanel): KernelStatus {
  const session = panel.sessionContext;
  return kernelStatus(session.kernelDisplayStatus, !!session.session?.kernel);
}

function lastModified(panel: NotebookPanel): string {
  return panel.context.contentsModel?.last_modified ?? '';
}

function watchSaves(panel: NotebookPanel, ledger: SaveLedger, origins: readonly string[]): void {
  panel.context.saveState.connect((_, state) => {
    if (state !== 'completed') {
      return;
    }
    // Emitted right after the context took the save's answer: its timestamp.
    const own = ledger.completed(lastModified(panel));
    if (own !== null) {
      tellHost({ protocol: PROTOCOL, type: 'user-saved', path: panel.context.path, lastModified: own }, origins);
    }
  });
}

/** Say `ready` when the user can type and run (or at the bound), then every change. */
function watchState(panel: NotebookPanel, origins: readonly string[]): void {
  let told: KernelStatus | null = null;
  let dirty = false;
  const kernelChanged = () => {
    if (told === null) {
      if (kernelSettled(currentKernel(panel))) {
        sayReady();
      }
      return;
    }
    const status = currentKernel(panel);
    if (status !== told) {
      told = status;
      tellHost({ protocol: PROTOCOL, type: 'kernel', status }, origins);
    }
  };
  const dirtyChanged = () => {
    if (told !== null && panel.context.model.dirty !== dirty) {
      dirty = panel.context.model.dirty;
      tellHost({ protocol: PROTOCOL, type: 'dirty', dirty }, origins);
    }
  };
  const sayReady = () => {
    if (told !== null) {
      return;
    }
    clearTimeout(bound);
    told = currentKernel(panel);
    tellHost({ protocol: PROTOCOL, type: 'ready', path: panel.context.path, kernel: told }, origins);
    dirtyChanged(); // a document dirty already (rare) is told at once
  };
  const bound = setTimeout(sayReady, READY_KERNEL_BOUND_MS);
  const session = panel.sessionContext;
  session.statusChanged.connect(kernelChanged);
  session.connectionStatusChanged.connect(kernelChanged);
  session.kernelChanged.connect(kernelChanged);
  panel.context.model.stateChanged.connect((_, change) => {
    if (change.name === 'dirty') {
      dirtyChanged();
    }
  });
  panel.disposed.connect(() => clearTimeout(bound));
  void session.ready.then(kernelChanged);
  kernelChanged();
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
    // The frame was allowed and Jupyter's page runs: the host stops waiting for a refusal.
    tellHost({ protocol: PROTOCOL, type: 'hello' }, allowed);
    const ledger = new SaveLedger();

    notebooks.widgetAdded.connect((_, panel) => {
      void panel.context.ready.then(() => {
        watchSaves(panel, ledger, allowed);
        watchState(panel, allowed);
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
      const type = request.type === 'reload' ? 'reloaded' : 'saved';
      if (request.type === 'save') {
        ledger.hostSaveStarted(request.requestId);
      }
      // A reload reads the file again (context.revert): the document then knows
      // the file's new timestamp, so the next save raises no "file changed on
      // disk" dialog. Unsaved edits are dropped, as a restore means.
      const done = request.type === 'reload' ? context.revert() : context.save();
      done
        .then(() => {
          const claimed = request.type === 'save' ? ledger.hostSaveEnded(request.requestId) : null;
          reply({
            protocol: PROTOCOL,
            type,
            requestId: request.requestId,
            path: context.path,
            lastModified: claimed ?? lastModified(panel)
          });
        })
        .catch((error: unknown) => {
          const claimed = request.type === 'save' ? ledger.hostSaveEnded(request.requestId) : null;
          if (claimed !== null) {
            // That completion was a Ctrl-S's that finished meanwhile: tell it as such.
            tellHost({ protocol: PROTOCOL, type: 'user-saved', path: context.path, lastModified: claimed }, allowed);
          }
          reply({
            protocol: PROTOCOL,
            type: 'error',
            requestId: request.requestId,
            reason: error instanceof Error ? error.message : String(error)
          });
        });
    });

    void app.restored.then(() => {
      // JupyterLab: one notebook, not a workspace (Notebook 7 has no left panel).
      const shell = app.shell as unknown as { collapseLeft?: () => void };
      shell.collapseLeft?.();
    });
  }
};

export default plugin;
