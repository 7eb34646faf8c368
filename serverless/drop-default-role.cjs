'use strict';

// serverless-iam-roles-per-function gives every function a role of its own,
// cloned from the framework's default Lambda role (IamRoleLambdaExecution), and
// leaves that default in the template: a role no function assumes, yet one that
// may write every function's logs and that anyone could later attach to a new
// function. This plugin, listed after it, removes the default once the
// per-function roles exist, and refuses to package while anything still names it.
class DropDefaultRole {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { 'before:package:finalize': () => this.drop() };
  }

  drop() {
    const template = this.serverless.service.provider.compiledCloudFormationTemplate;
    const id = this.serverless.getProvider('aws').naming.getRoleLogicalId();
    if (!(id in template.Resources)) return;
    const { [id]: _role, ...others } = template.Resources;
    const users = Object.entries({ ...others, ...template.Outputs })
      .filter(([, value]) => JSON.stringify(value).includes(`"${id}"`))
      .map(([name]) => name);
    if (users.length > 0) {
      throw new this.serverless.classes.Error(
        `The default Lambda role ${id} is still used by ${users.join(', ')}: give each function its own iamRoleStatements (serverless-iam-roles-per-function), even an empty list, so that no resource needs the default role.`,
      );
    }
    delete template.Resources[id];
  }
}

module.exports = DropDefaultRole;
