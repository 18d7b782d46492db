// @ts-check
/** The branch chooser's options, shared by the commit pane and the reflog. */
import { h } from '../dom.js';
import { S } from '../state.js';

/** <option>s for the profile's branches, its own first. */
/**
 * @param {string[]} branchList
 * @param {string | null} selected
 */
export function branchOptions(branchList, selected) {
  return branchList.map((b) =>
    h('option', { value: b, selected: b === selected ? true : undefined }, b === S.profile ? `${b} (the profile)` : b),
  );
}
