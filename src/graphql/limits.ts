import {
  GraphQLError,
  Kind,
  type ASTVisitor,
  type FragmentDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';

interface Cost {
  /** Selections (fields and fragment spreads), fragments expanded. */
  readonly selections: number;
  /** Nesting of fields below the set. */
  readonly depth: number;
  /**
   * Fields of the set itself, through fragments (not `__typename`): at the top, each does work of
   * its own (a store or FHIR server call), which aliases could otherwise repeat maxFields times.
   */
  readonly fields: number;
}

/**
 * Refuses an operation whose selections (fragments expanded) nest deeper than `maxDepth`, hold
 * more than `maxFields` selections (fields and fragment spreads), or more than `maxRootFields`
 * fields at the top: the cost of a query is bounded
 * before it runs. Each fragment's cost is computed once (a chain of fragments that spread the
 * next twice costs its expanded size, computed in linear time); a cycle costs nothing here and
 * is refused by the spec's own rule (NoFragmentCycles).
 */
export function depthAndFieldLimit(maxDepth: number, maxFields: number, maxRootFields: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
    const known = new Map<string, Cost>();
    const visiting = new Set<string>();
    const fragmentCost = (name: string): Cost => {
      const done = known.get(name);
      if (done) return done;
      const f = fragments.get(name);
      if (!f || visiting.has(name)) return { selections: 0, depth: 0, fields: 0 };
      visiting.add(name);
      const c = setCost(f.selectionSet);
      visiting.delete(name);
      known.set(name, c);
      return c;
    };
    const setCost = (set: SelectionSetNode): Cost => {
      let selections = 0;
      let depth = 0;
      let fields = 0;
      for (const s of set.selections) {
        const inner =
          s.kind === Kind.FIELD
            ? s.selectionSet
              ? setCost(s.selectionSet)
              : { selections: 0, depth: 0, fields: 0 }
            : s.kind === Kind.INLINE_FRAGMENT
              ? setCost(s.selectionSet)
              : fragmentCost(s.name.value);
        selections += 1 + inner.selections;
        depth = Math.max(depth, (s.kind === Kind.FIELD ? 1 : 0) + inner.depth);
        if (s.kind !== Kind.FIELD) fields += inner.fields;
        else if (s.name.value !== '__typename') fields += 1;
      }
      return { selections, depth, fields };
    };
    return {
      OperationDefinition(node) {
        const cost = setCost(node.selectionSet);
        if (cost.fields > maxRootFields)
          context.reportError(new GraphQLError(`the operation has more than graphql.maxRootFields (${maxRootFields}) top-level fields`));
        if (cost.depth > maxDepth) context.reportError(new GraphQLError(`the operation nests deeper than graphql.maxDepth (${maxDepth})`));
        if (cost.selections > maxFields)
          context.reportError(new GraphQLError(`the operation has more than graphql.maxFields (${maxFields}) selections`));
      },
    };
  };
}
