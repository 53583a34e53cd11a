import {
  GraphQLError,
  Kind,
  type ASTVisitor,
  type FragmentDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';

/**
 * Refuses an operation whose selections (fragments expanded) nest deeper than `maxDepth` or hold
 * more than `maxFields` fields: the cost of a query is bounded before it runs.
 */
export function depthAndFieldLimit(maxDepth: number, maxFields: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(node) {
      const fragments = new Map<string, FragmentDefinitionNode>();
      for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
      let fields = 0;
      const walk = (set: SelectionSetNode, depth: number, seen: ReadonlySet<string>): void => {
        if (depth > maxDepth) throw new GraphQLError(`the operation nests deeper than graphql.maxDepth (${maxDepth})`);
        for (const s of set.selections) {
          if (s.kind === Kind.FIELD) {
            if (++fields > maxFields) throw new GraphQLError(`the operation has more than graphql.maxFields (${maxFields}) fields`);
            if (s.selectionSet) walk(s.selectionSet, depth + 1, seen);
          } else if (s.kind === Kind.INLINE_FRAGMENT) walk(s.selectionSet, depth, seen);
          else {
            const f = fragments.get(s.name.value);
            // A fragment spread in itself is reported by the spec's own rule (NoFragmentCycles).
            if (f && !seen.has(f.name.value)) walk(f.selectionSet, depth, new Set([...seen, f.name.value]));
          }
        }
      };
      try {
        walk(node.selectionSet, 1, new Set());
      } catch (err) {
        context.reportError(err as GraphQLError);
      }
    },
  });
}
